"""Hand-computed features on a 13-row table (the pymc-marketing habit: a tiny table with the answer planted)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from shopseg.backends import DuckDBBackend
from shopseg.clean import clean_transactions
from shopseg.features import FEATURES, build_features, default_as_of
from shopseg.ingest import ingest_transactions

ROWS = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
1001,P1,Widget,2,2011-01-01 10:00:00,5.0,A,UK
1001,P2,Gadget,1,2011-01-01 10:00:00,3.0,A,UK
1001,P2,Gadget,1,2011-01-01 10:00:00,3.0,A,UK
1002,P1,Widget,1,2011-01-05 15:00:00,5.0,A,UK
1003,P3,Doohickey,4,2011-01-08 20:00:00,2.5,A,UK
2001,P2,Gadget,10,2011-01-09 09:00:00,3.0,B,FR
C2002,P2,Gadget,-2,2011-01-09 12:00:00,3.0,B,FR
2003,P1,Widget,1,2011-01-11 09:00:00,5.0,B,FR
3001,P4,Lamp,1,2010-12-20 08:00:00,100.0,C,UK
3001,POST,Postage,1,2010-12-20 08:00:00,18.0,C,UK
3002,P4,Lamp,1,2011-01-03 08:00:00,100.0,C,UK
4001,P1,Widget,3,2011-01-04 11:00:00,5.0,,UK
"""
# Line 3 duplicates line 2 exactly (removed); 2003 falls after as_of; POST is not a product; one line has no id.

AS_OF = datetime(2011, 1, 10)


@pytest.fixture(scope="module")
def feats(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    d = tmp_path_factory.mktemp("feat")
    src = d / "orders.csv"
    src.write_text(ROWS, encoding="utf-8")
    b = DuckDBBackend(d / "t.duckdb")
    ing = ingest_transactions(b, [src], work=d / "w")
    clean_transactions(b, ing)
    fs = build_features(b, AS_OF, present_columns=set(ing.mapping.source))
    b.close()
    return fs.frame.set_index("customer_id")


def test_rfm_by_hand(feats: pd.DataFrame) -> None:
    a, b, c = feats.loc["A"], feats.loc["B"], feats.loc["C"]
    # A: orders on Jan 1 (13.0), Jan 5 (5.0), Jan 8 (10.0)
    assert a["recency_days"] == 2
    assert a["frequency"] == 3
    assert a["monetary"] == pytest.approx(28.0)
    assert a["avg_order_value"] == pytest.approx(28.0 / 3)
    assert a["tenure_days"] == 9
    assert a["mean_days_between_orders"] == pytest.approx((7 + 10 / 24) / 2)
    assert a["distinct_products"] == 3
    assert a["mean_basket_items"] == pytest.approx(8 / 3)
    assert a["mean_basket_lines"] == pytest.approx(4 / 3)
    assert a["total_items"] == 8
    assert a["n_lines"] == 4
    assert a["mean_unit_price"] == pytest.approx(3.5)
    assert a["return_rate"] == 0
    # B: one order of 30.0 on Jan 9, 2 of the 10 units returned; the Jan 11 order is after as_of
    assert (b["recency_days"], b["frequency"], b["monetary"], b["tenure_days"]) == (1, 1, 30.0, 1)
    assert b["mean_days_between_orders"] == 1.0  # one order: the tenure, a lower bound
    assert b["return_rate"] == pytest.approx(6.0 / 30.0)
    # C: Dec 20 and Jan 3, 100.0 each; postage excluded
    assert (c["recency_days"], c["frequency"], c["monetary"], c["tenure_days"]) == (7, 2, 200.0, 21)
    assert c["mean_days_between_orders"] == pytest.approx(14.0)
    assert c["active_months"] == 2
    assert a["active_months"] == 1


def test_time_shares_by_hand(feats: pd.DataFrame) -> None:
    a = feats.loc["A"]
    # 2011-01-01 and 2011-01-08 are Saturdays, 2011-01-05 a Wednesday
    assert a["spend_share_sat"] == pytest.approx(23 / 28)
    assert a["spend_share_wed"] == pytest.approx(5 / 28)
    assert a["spend_share_mon"] == 0
    assert a["spend_share_morning"] == pytest.approx(13 / 28)
    assert a["spend_share_afternoon"] == pytest.approx(5 / 28)
    assert a["spend_share_evening"] == pytest.approx(10 / 28)
    assert feats.loc["C", "spend_share_morning"] == 1.0
    days = [f"spend_share_{d}" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]
    assert feats[days].sum(axis=1).round(12).eq(1).all()


def test_only_customers_with_clean_purchases(feats: pd.DataFrame) -> None:
    assert sorted(feats.index) == ["A", "B", "C"]


def test_registry_covers_every_column(feats: pd.DataFrame) -> None:
    registered = {f.name for f in FEATURES}
    assert set(feats.columns) == registered
    assert len([f for f in FEATURES if f.numeric]) >= 24
    assert all(f.description and f.unit for f in FEATURES)


def test_default_as_of_is_day_after_last_purchase(tmp_path: Path) -> None:
    src = tmp_path / "o.csv"
    src.write_text(ROWS, encoding="utf-8")
    b = DuckDBBackend(tmp_path / "t.duckdb")
    ing = ingest_transactions(b, [src], work=tmp_path / "w")
    clean_transactions(b, ing)
    assert default_as_of(b) == datetime(2011, 1, 12)
    b.close()


def test_product_features_skipped_without_products(tmp_path: Path) -> None:
    src = tmp_path / "o.csv"
    src.write_text("customer,date,amount\nx,2011-01-01,10\nx,2011-01-03,20\ny,2011-01-02,5\n", encoding="utf-8")
    b = DuckDBBackend(tmp_path / "t.duckdb")
    ing = ingest_transactions(b, [src], work=tmp_path / "w")
    clean_transactions(b, ing)
    fs = build_features(b, datetime(2011, 1, 4), present_columns=set(ing.mapping.source))
    b.close()
    assert "distinct_products" not in fs.frame.columns
    assert "distinct_products" in fs.skipped
    x = fs.frame.set_index("customer_id").loc["x"]
    assert (x["frequency"], x["monetary"], x["recency_days"]) == (2, 30.0, 1)


def test_each_customer_as_of_their_own_date(tmp_path: Path) -> None:
    """``feature_sql(as_of_table=...)``: every customer's features as of their own date in one query, equal to
    the query for that date alone (lines, returns and day counts all cut at the customer's date); customers
    the table does not list are left out."""
    from shopseg.features import feature_sql

    src = tmp_path / "orders.csv"
    src.write_text(ROWS, encoding="utf-8")
    b = DuckDBBackend(tmp_path / "t.duckdb")
    try:
        ing = ingest_transactions(b, [src], work=tmp_path / "w")
        clean_transactions(b, ing)
        dates = {"A": datetime(2011, 1, 6), "B": datetime(2011, 1, 12), "C": AS_OF}
        b.register("dates", pd.DataFrame({"customer_id": list(dates), "as_of": list(dates.values())}))
        together = b.df(feature_sql(None, as_of_table="dates")).set_index("customer_id")
        assert sorted(together.index) == ["A", "B", "C"]
        for cid, when in dates.items():
            alone = b.df(feature_sql(when)).set_index("customer_id").loc[[cid]]
            pd.testing.assert_frame_equal(together.loc[[cid]], alone, check_dtype=False)
        assert together.loc["A", "frequency"] == 2 and together.loc["A", "recency_days"] == 1  # Jan 1, Jan 5
        assert together.loc["B", "return_rate"] > 0 and together.loc["B", "frequency"] == 2  # 2003 counts now
        b.register(
            "none",
            pd.DataFrame({"customer_id": pd.Series([], dtype=str), "as_of": pd.Series([], dtype="datetime64[us]")}),
        )
        assert b.df(feature_sql(None, as_of_table="none")).empty
    finally:
        b.close()
