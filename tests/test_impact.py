"""Impact scenarios: per-segment figures and the revenue effect of uplifts, computed by hand."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from shopseg.backends import DuckDBBackend
from shopseg.config import ImpactConfig
from shopseg.insights.impact import impact_table, segment_figures


@pytest.fixture
def shop(backend: DuckDBBackend) -> DuckDBBackend:
    """Two segments; the shop's first order is on 2022-01-01 00:00, and AS_OF is 730.5 days later: a window of
    exactly two years of 365.25 days."""
    backend.create_table(
        "segments",
        pd.DataFrame(
            {
                "customer_id": ["a", "b", "c", "d"],
                "segment": [0, 0, 1, 1],
                "segment_name": ["Loyal", "Loyal", "Lapsed", "Lapsed"],
                "action": ["Reward", "Reward", "Win back", "Win back"],
            }
        ),
    )
    rows = [
        # segment 0: 8 orders worth 800 (AOV 100)
        *[("a", f"a{i}", 1.0, 100.0, datetime(2022, 1, 1) if i == 0 else datetime(2023, 6, 1)) for i in range(5)],
        *[("b", f"b{i}", 2.0, 50.0, datetime(2023, 7, 1)) for i in range(3)],
        # segment 1: 2 orders worth 60 (AOV 30); d bought nothing
        ("c", "c0", 1.0, 20.0, datetime(2022, 5, 1)),
        ("c", "c1", 1.0, 40.0, datetime(2022, 6, 1)),
    ]
    backend.create_table(
        "transactions", pd.DataFrame(rows, columns=["customer_id", "order_id", "quantity", "unit_price", "ts"])
    )
    return backend


AS_OF = datetime(2024, 1, 1, 12, 0)  # 730.5 days after 2022-01-01 00:00 = 2 years of 365.25 days


def test_segment_figures_by_hand(shop: DuckDBBackend) -> None:
    f = segment_figures(shop, AS_OF).set_index("segment")
    assert f.loc[0, "years"] == pytest.approx(2.0)
    assert (f.loc[0, "customers"], f.loc[0, "orders"], f.loc[0, "revenue"]) == (2, 8, 800.0)
    assert f.loc[0, "orders_per_customer_year"] == pytest.approx(8 / 2 / 2)  # 2 orders per customer a year
    assert f.loc[0, "aov"] == pytest.approx(100.0)
    assert f.loc[0, "annual_revenue"] == pytest.approx(400.0)
    assert (f.loc[1, "customers"], f.loc[1, "orders"], f.loc[1, "revenue"]) == (2, 2, 60.0)
    assert f.loc[1, "orders_per_customer_year"] == pytest.approx(0.5)
    assert f.loc[1, "aov"] == pytest.approx(30.0)
    assert f.loc[1, "annual_revenue"] == pytest.approx(30.0)
    assert f.loc[1, "action"] == "Win back"


def test_scenarios_by_hand(shop: DuckDBBackend) -> None:
    f = segment_figures(shop, AS_OF)
    t = impact_table(f, ImpactConfig(aov_uplift=0.10, retention_uplift=0.05, extra_orders=1.0))
    d = t.set_index(["segment", "scenario"])["revenue_change"]
    # segment 0: N = 2, f = 2, a = 100, R = 400
    assert d[(0, "aov")] == pytest.approx(40.0)  # 400 x 0.10
    assert d[(0, "retention")] == pytest.approx(20.0)  # 0.05 x 2 x 2 x 100
    assert d[(0, "extra_orders")] == pytest.approx(200.0)  # 2 x 1 x 100
    assert d[(0, "combined")] == pytest.approx(2 * 1.05 * 3 * 110 - 400)  # 293.0
    # segment 1: N = 2, f = 0.5, a = 30, R = 30
    assert d[(1, "aov")] == pytest.approx(3.0)
    assert d[(1, "retention")] == pytest.approx(1.5)
    assert d[(1, "extra_orders")] == pytest.approx(60.0)
    assert d[(1, "combined")] == pytest.approx(2 * 1.05 * 1.5 * 33 - 30)
    share = t.set_index(["segment", "scenario"])["change_share"]
    assert share[(0, "aov")] == pytest.approx(0.10) and share[(1, "extra_orders")] == pytest.approx(2.0)
    assert list(t["assumption"][:4]) == ["AOV +10%", "retention +5%", "+1 order/customer/yr", "all three"]


def test_no_orders_no_figures(backend: DuckDBBackend) -> None:
    backend.create_table("segments", pd.DataFrame({"customer_id": ["a"], "segment": [0]}))
    assert segment_figures(backend, AS_OF).empty
    assert impact_table(segment_figures(backend, AS_OF)).empty
