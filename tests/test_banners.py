"""Banner economics: hand-computed values per 1,000 impressions, break-even CPC, attribution of conversions,
the seeded bootstrap interval, the recommendation rule, featured products and best hours."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopseg.backends import DuckDBBackend
from shopseg.config import BannersConfig, SlotRates
from shopseg.errors import ConfigError
from shopseg.insights.banners import (
    Sample,
    _Rates,
    banner_table,
    best_hours,
    bootstrap_ratio,
    break_even_aov,
    break_even_cpc,
    decide,
    external_per_1000,
    internal_per_1000,
    shrunk_rate,
)

T0 = datetime(2024, 3, 1, 10, 0)


def test_formulas_by_hand() -> None:
    # CTR 2 %, conversion 25 %, AOV 100, margin 30 %: 1000 x 0.02 x 0.25 x 100 x 0.3 = 150
    assert internal_per_1000(0.02, 0.25, 100.0, 0.3) == pytest.approx(150.0)
    assert external_per_1000(0.02, 0.5) == pytest.approx(10.0)  # 1000 x 0.02 x 0.5
    assert external_per_1000(0.02, 0.5, cpm=3.0) == 3.0
    # the CPC at which selling pays the same: 0.02 x 0.25 x 100 x 0.3 / 0.02 = 7.5
    assert break_even_cpc(0.02, 0.25, 100.0, 0.3, 0.02) == pytest.approx(7.5)
    assert break_even_cpc(0.02, 0.25, 100.0, 0.3, 0.01) == pytest.approx(15.0)


def test_shrunk_rate() -> None:
    assert shrunk_rate(0, 4, 0.02, 50) == pytest.approx(1 / 54)
    assert shrunk_rate(30, 100, 0.02, 0) == pytest.approx(0.3)
    assert shrunk_rate(0, 0, 0.02, 0) == 0.02  # no trials, no prior weight: the prior


def test_recommendation_rule() -> None:
    assert decide(1.2, 2.0) == "keep internal"
    assert decide(0.3, 0.8) == "sell"
    assert decide(0.8, 1.3) == "mix"
    assert decide(1.1, 1.6, keep_above=1.2, sell_below=0.8) == "mix"
    assert decide(float("nan"), 1.0) == "no data"


def _shop(backend: DuckDBBackend, *, banner_events: bool) -> None:
    """Two segments. Segment 0 (a, b, c, d): 200 impressions of slot 'home', 4 clicks, one followed by an order
    within 24 h; orders worth 400 in 4 orders (AOV 100). Segment 1 (e, f): 100 impressions, 1 click without an
    order after it, 2 orders worth 60 (AOV 30)."""
    segs = pd.DataFrame(
        {
            "customer_id": list("abcdef"),
            "segment": [0, 0, 0, 0, 1, 1],
            "segment_name": ["Loyal"] * 4 + ["Bargain"] * 2,
        }
    )
    backend.create_table("segments", segs)
    tx = [
        # customer, order, product, name, qty, price, ts
        ("a", "o1", "P1", "Lamp", 1.0, 100.0, T0 + timedelta(hours=2)),  # 2 h after a's click: converted
        ("b", "o2", "P1", "Lamp", 2.0, 50.0, T0 - timedelta(days=3)),  # before b's click: not converted
        ("c", "o3", "P2", "Mug", 4.0, 25.0, T0 + timedelta(hours=30)),  # 30 h after c's click: too late
        ("d", "o4", "P3", "Rug", 1.0, 100.0, T0 - timedelta(days=1)),
        ("e", "o5", "P2", "Mug", 1.0, 30.0, T0 - timedelta(days=2)),
        ("f", "o6", "P4", "Cup", 3.0, 10.0, T0 - timedelta(days=2)),
    ]
    backend.create_table(
        "transactions",
        pd.DataFrame(
            tx, columns=["customer_id", "order_id", "product_id", "product_name", "quantity", "unit_price", "ts"]
        ),
    )
    if banner_events:
        ev = []
        for cid, n_imp in (("a", 50), ("b", 50), ("c", 50), ("d", 50), ("e", 60), ("f", 40)):
            ev += [(cid, T0 - timedelta(minutes=i), "banner_view", "home") for i in range(n_imp)]
        clicks = [("a", T0), ("b", T0), ("c", T0), ("d", T0 + timedelta(minutes=5)), ("e", T0)]
        ev += [(cid, t, "banner_click", "home") for cid, t in clicks]
        ev += [("a", T0 + timedelta(hours=2), "purchase", None)]
        backend.create_table("events", pd.DataFrame(ev, columns=["customer_id", "ts", "event_type", "banner_slot"]))
    backend.create_table(
        "segment_items",
        pd.DataFrame(
            {
                "segment": [0, 0, 0, 1],
                "product_id": ["P1", "P3", "P2", "P4"],
                "seg_rank": [1, 2, 3, 1],
            }
        ),
    )


def test_rates_measured_from_banner_events(backend: DuckDBBackend) -> None:
    _shop(backend, banner_events=True)
    cfg = BannersConfig(margin=0.3, cpc=0.5, bootstrap=200, products=2, prior_impressions=0, prior_clicks=0)
    res = banner_table(backend, cfg, seed=1)
    assert res.source == "events"
    t = res.table.set_index("segment")
    s0, s1 = t.loc[0], t.loc[1]
    assert s0["slot"] == "home" and s0["customers"] == 4
    assert (s0["impressions"], s0["clicks"]) == (200, 4)
    assert s0["ctr"] == pytest.approx(0.02) and s0["conversion"] == pytest.approx(0.25)
    assert s0["aov"] == pytest.approx(100.0)  # (100 + 100 + 100 + 100) / 4 orders
    assert s0["internal_per_1000"] == pytest.approx(150.0)
    assert s0["external_per_1000"] == pytest.approx(10.0)
    assert s0["ratio"] == pytest.approx(15.0)
    assert s0["break_even_cpc"] == pytest.approx(7.5)
    assert s0["rates_from"] == "ctr: events, conversion: events, aov: orders"
    # with the default priors the few clicks are pulled toward the configured rates
    t2 = banner_table(backend, BannersConfig(margin=0.3, cpc=0.5, bootstrap=0), seed=1).table.set_index("segment")
    assert t2.loc[0, "ctr"] == pytest.approx((4 + 1000 * 0.0046) / (200 + 1000))
    assert t2.loc[0, "conversion"] == pytest.approx((1 + 50 * 0.02) / (4 + 50))
    assert t2.loc[1, "conversion"] == pytest.approx(1.0 / 51)  # 0 of 1 click: not 0 %
    assert t2.loc[0, "rates_from"] == "ctr: events, shrunk, conversion: events, shrunk, aov: orders"
    assert s0["featured_products"] == "Lamp; Rug"
    # segment 1: 1 click in 100 impressions, no conversion measured (0 of 1): internal value 0, sell
    assert s1["ctr"] == pytest.approx(0.01) and s1["conversion"] == 0.0
    assert s1["aov"] == pytest.approx(30.0)
    assert s1["ratio"] == 0.0 and s1["recommendation"] == "sell"
    assert s1["featured_products"] == "Cup"
    # best hours from the events (impressions run back from 10:00, so 09-10h has the most)
    assert s0["best_hours"].startswith("09-10h")


def test_rates_from_config_without_banner_events(backend: DuckDBBackend) -> None:
    _shop(backend, banner_events=False)
    cfg = BannersConfig(bootstrap=0)
    res = banner_table(backend, cfg)
    assert res.source == "config" and any("no banner events" in n for n in res.notes)
    t = res.table.set_index("segment")
    assert list(res.table["slot"]) == ["main", "main"]
    s0 = t.loc[0]
    # documented defaults: CTR 0.46 %, conversion 2 %, margin 30 %, CPC 0.63; AOV 100 measured
    assert s0["internal_per_1000"] == pytest.approx(1000 * 0.0046 * 0.02 * 100 * 0.3)
    assert s0["external_per_1000"] == pytest.approx(1000 * 0.0046 * 0.63)
    assert s0["ratio"] == pytest.approx(0.02 * 100 * 0.3 / 0.63)  # the CTR cancels
    assert s0["break_even_cpc"] == pytest.approx(0.02 * 100 * 0.3)
    assert s0["ratio_low"] == s0["ratio_high"] == s0["ratio"]  # no bootstrap
    # 0.02 x 100 x 0.3 = 0.60 per click internally against 0.63 for a sold click: sell
    assert s0["recommendation"] == "sell"
    # best hours from the orders when there are no events
    assert "orders" in s0["best_hours"]


def test_cpm_and_per_slot_rates(backend: DuckDBBackend) -> None:
    _shop(backend, banner_events=False)
    cfg = BannersConfig(
        slots=["hero", "footer"],
        slot_rates={"hero": SlotRates(ctr=0.01, cpm=2.0)},
        bootstrap=0,
        conversion=0.05,
        margin=0.2,
    )
    t = banner_table(backend, cfg).table
    hero = t[(t["segment"] == 0) & (t["slot"] == "hero")].iloc[0]
    footer = t[(t["segment"] == 0) & (t["slot"] == "footer")].iloc[0]
    # hero: 1000 x 0.01 x 0.05 x 100 x 0.2 = 10 against a CPM of 2
    assert hero["internal_per_1000"] == pytest.approx(10.0) and hero["external_per_1000"] == 2.0
    assert hero["ratio"] == pytest.approx(5.0)
    # footer: the defaults (CTR 0.46 %, CPC 0.63)
    assert footer["ratio"] == pytest.approx(0.05 * 100 * 0.2 / 0.63)


def _sample(seed: int = 0, n: int = 300) -> Sample:
    rng = np.random.default_rng(seed)
    imp = rng.integers(0, 40, n).astype(float)
    clk = rng.binomial(imp.astype(int), 0.03).astype(float)
    conv = rng.binomial(clk.astype(int), 0.2).astype(float)
    orders = rng.integers(0, 4, n).astype(float)
    revenue = orders * rng.gamma(4.0, 20.0, n)
    return Sample(imp, clk, conv, revenue, orders)


def _measured(s: Sample) -> _Rates:
    return _Rates(
        float(s.clicks.sum() / s.impressions.sum()),
        float(s.converted.sum() / s.clicks.sum()),
        float(s.revenue.sum() / s.orders.sum()),
        0.3,
        0.5,
        None,
        None,
        True,
        True,
        True,
    )


def test_bootstrap_interval_is_deterministic_under_the_seed() -> None:
    s = _sample()
    r = _measured(s)
    a = bootstrap_ratio(s, r, n_boot=300, confidence=0.9, seed=5)
    b = bootstrap_ratio(s, r, n_boot=300, confidence=0.9, seed=5)
    c = bootstrap_ratio(s, r, n_boot=300, confidence=0.9, seed=6)
    assert a == b and a != c
    point = r.ratio(r.ctr, r.conversion, r.aov)
    assert a[0] < point < a[1]
    # a wider confidence gives a wider interval
    w = bootstrap_ratio(s, r, n_boot=300, confidence=0.99, seed=5)
    assert w[0] <= a[0] and w[1] >= a[1]


def test_bootstrap_normal_limit_matches_the_resampling() -> None:
    s = _sample(n=4000)
    r = _measured(s)
    exact = bootstrap_ratio(s, r, n_boot=600, confidence=0.9, seed=1)
    limit = bootstrap_ratio(s, r, n_boot=600, confidence=0.9, seed=1, max_n=1000)
    assert limit != exact  # the two paths differ ...
    assert limit[0] == pytest.approx(exact[0], rel=0.05) and limit[1] == pytest.approx(exact[1], rel=0.05)  # ... a bit


def test_bootstrap_varies_only_measured_rates() -> None:
    s = _sample()
    fixed = _Rates(0.01, 0.02, 80.0, 0.3, 0.5, None, None, False, False, False)
    lo, hi = bootstrap_ratio(s, fixed, n_boot=100, confidence=0.9, seed=0)
    assert lo == hi == pytest.approx(0.02 * 80.0 * 0.3 / 0.5)


def test_best_hours_from_orders(backend: DuckDBBackend) -> None:
    _shop(backend, banner_events=False)
    hours = best_hours(backend, 2)
    # segment 1: two orders, both at 10:00
    assert hours[1] == "10-11h (2 orders)"


def test_bad_thresholds_are_refused(backend: DuckDBBackend) -> None:
    _shop(backend, banner_events=False)
    with pytest.raises(ConfigError, match="keep_above"):
        banner_table(backend, BannersConfig(keep_above=0.8, sell_below=1.2))


@pytest.mark.slow
def test_run_on_generated_events_orders_and_attributes(tmp_path: Path) -> None:
    """The package's generator with banner impressions: the banner table is measured per slot from the events,
    and its impressions and clicks add up to the run's clean banner events."""
    from shopseg.datasets_events import BANNER_SLOTS, generate_events
    from shopseg.pipeline import run

    g = generate_events(800, seed=4, banners=True)
    for name in ("events", "orders", "customers"):
        getattr(g, name).to_parquet(tmp_path / f"{name}.parquet")
    res = run(
        [tmp_path / "orders.parquet"],
        tmp_path / "out",
        events=[tmp_path / "events.parquet"],
        customers=[tmp_path / "customers.parquet"],
    )
    b = pd.read_csv(tmp_path / "out" / "banners.csv")
    assert set(b["slot"]) == set(BANNER_SLOTS)
    assert len(b) == len(res.profiles) * len(BANNER_SLOTS)
    assert b["rates_from"].str.startswith("ctr: events").all()
    db = DuckDBBackend(tmp_path / "out" / "shopseg.duckdb")
    try:
        n_imp = db.scalar("SELECT count(*) FROM events WHERE event_type = 'banner_view'")
        n_clk = db.scalar("SELECT count(*) FROM events WHERE event_type = 'banner_click'")
    finally:
        db.close()
    assert b["impressions"].sum() == n_imp and b["clicks"].sum() == n_clk
    assert (b["ratio_low"] <= b["ratio"] + 1e-12).all() and (b["ratio"] <= b["ratio_high"] + 1e-12).all()
    assert b["best_hours"].str.contains("events").all()
    assert res.manifest["files"]["banners"] == "banners.csv"
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert 'id="banners"' in html and 'id="impact"' in html and 'id="attributes"' in html


def _coupon_run(backend: DuckDBBackend, *, timed: bool) -> None:
    """A run of a customer table with coupon activity and no order values: segment 0 (a, b), segment 1 (c)."""
    backend.create_table(
        "segments", pd.DataFrame({"customer_id": list("abc"), "segment": [0, 0, 1], "segment_name": ["X", "X", "Y"]})
    )
    h = 9 if timed else 0
    rows = [
        # customer, ts (2024-03-04 is a Monday), burn_ts, merchant
        ("a", datetime(2024, 3, 4, h), datetime(2024, 3, 5), "Nile"),
        ("a", datetime(2024, 3, 11, h), None, "Delta"),
        ("b", datetime(2024, 3, 5, h), datetime(2024, 3, 6), "Delta"),
        ("b", datetime(2024, 3, 12, h), datetime(2024, 3, 13), "Delta"),
        ("c", datetime(2024, 3, 6, h), None, "Nile"),
    ]
    backend.create_table("coupons", pd.DataFrame(rows, columns=["customer_id", "ts", "burn_ts", "merchant"]))


def test_break_even_aov_by_hand() -> None:
    # 1,000 impressions sold at CTR 0.46 % x CPC 0.63 = 2.898; promoting earns 1000 x 0.0046 x 0.02 x AOV x 0.3
    assert break_even_aov(0.0046, 0.02, 0.3, external_per_1000(0.0046, 0.63)) == pytest.approx(0.63 / (0.02 * 0.3))
    assert break_even_aov(0.01, 0.05, 0.5, 4.0) == pytest.approx(4.0 / (1000 * 0.01 * 0.05 * 0.5))  # a CPM of 4
    # at the break-even AOV both sides earn the same
    aov = break_even_aov(0.01, 0.05, 0.5, 4.0)
    assert internal_per_1000(0.01, 0.05, aov, 0.5) == pytest.approx(4.0)


def test_table_without_order_values_uses_config_and_states_it(backend: DuckDBBackend) -> None:
    """The coupon workbook has no amounts: the table is still made, with the AOV (and what needs it) empty, the
    external value and the break-even AOV from config, the merchants to feature and the busiest weekdays."""
    _coupon_run(backend, timed=False)
    res = banner_table(backend, BannersConfig(bootstrap=50, products=2, hours=2), seed=0)
    t = res.table.set_index("segment")
    assert list(t.index) == [0, 1] and t["customers"].tolist() == [2, 1] and (t["slot"] == "main").all()
    assert t["aov"].isna().all() and t["internal_per_1000"].isna().all() and t["ratio"].isna().all()
    assert t["external_per_1000"].tolist() == pytest.approx([1000 * 0.0046 * 0.63] * 2)
    assert t["break_even_aov"].tolist() == pytest.approx([0.63 / (0.02 * 0.3)] * 2)  # 105
    assert (t["recommendation"] == "no order value").all()
    assert (t["rates_from"] == "ctr: config, conversion: config, aov: not available").all()
    assert any("no order values" in n for n in res.notes)
    # segment 0 burned Delta twice (b) and Nile once (a): Delta first
    assert t.loc[0, "featured_products"] == "merchants: Delta (2 burned of 3); Nile (1 burned of 1)"
    assert t.loc[1, "featured_products"] == "merchants: Nile (0 burned of 1)"
    # dates without a time of day: weekdays (segment 0: Monday 2, Tuesday 2), not a meaningless 00-01h
    assert t.loc[0, "best_hours"].startswith("Monday (2), Tuesday (2) coupon transactions by weekday")
    # with an AOV given, the same run gets its advice: 0.02 x 150 x 0.3 = 0.9 per click against 0.63: keep
    res = banner_table(backend, BannersConfig(bootstrap=0, aov=150.0), seed=0)
    assert res.table["ratio"].tolist() == pytest.approx([0.02 * 150 * 0.3 / 0.63] * 2)
    assert (res.table["recommendation"] == "keep internal").all()


def test_best_hours_from_timed_coupons(backend: DuckDBBackend) -> None:
    _coupon_run(backend, timed=True)
    assert best_hours(backend, 1) == {0: "09-10h (4 coupon transactions)", 1: "09-10h (1 coupon transactions)"}
