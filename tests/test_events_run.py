"""The events half end to end: the generator (seeded, streamed, planted segments) and `shopseg run` with events
alone, with orders, events and customer attributes together, and on the real REES46 sample."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

import shopseg
from shopseg.cli import main
from shopseg.datasets_events import (
    DEFAULT_BEHAVIOUR_SEGMENTS,
    EVENT_SCHEMA,
    generate_events,
    iter_event_chunks,
    write_event_shop,
)


def test_generator_is_seeded_and_consistent() -> None:
    a = generate_events(150, seed=3, banners=True)
    b = generate_events(150, seed=3, banners=True)
    pd.testing.assert_frame_equal(a.events, b.events)
    assert not a.events.equals(generate_events(150, seed=4, banners=True).events)
    e = a.events
    assert list(e.columns) == EVENT_SCHEMA.names
    assert set(e["event_type"]) == {"view", "cart", "remove_from_cart", "purchase", "banner_view", "banner_click"}
    # the truth: every customer once, segments in their shares
    assert a.truth["user_id"].is_unique and len(a.truth) == 150
    shares = a.truth["segment"].value_counts(normalize=True)
    for s in DEFAULT_BEHAVIOUR_SEGMENTS:
        assert shares[s.name] == pytest.approx(s.share, abs=0.01)
    # the orders are the purchase events, one invoice per session with a purchase
    buys = e[e["event_type"] == "purchase"]
    assert len(a.orders) == len(buys)
    assert a.orders["InvoiceNo"].nunique() == buys["user_session"].nunique()
    assert a.orders["UnitPrice"].sum() == pytest.approx(buys["price"].sum())
    # banner events name their slot and no product; shopping events have a product and a price
    banner = e["event_type"].str.startswith("banner")
    assert e.loc[banner, "banner_slot"].notna().all() and e.loc[banner, "product_id"].isna().all()
    assert e.loc[~banner, "product_id"].notna().all() and (e.loc[~banner, "price"] > 0).all()
    assert set(a.customers.columns) == {"customer_id", "gender", "city", "age", "signup_date"}
    # clicks follow an impression in the same session
    clicks = e[e["event_type"] == "banner_click"]
    views = e[e["event_type"] == "banner_view"]
    assert set(clicks["user_session"]) <= set(views["user_session"])


def test_generator_marginals_follow_the_rees46_sample() -> None:
    e = generate_events(1500, seed=0).events
    mix = e["event_type"].value_counts(normalize=True)
    assert mix["view"] > 0.85 and mix["purchase"] < 0.05  # the sample: 97.8 % views, 1.2 % purchases
    per_session = e.groupby("user_session").size()
    assert 3.0 < per_session.mean() < 6.0  # the sample: 3.44
    gaps = e.sort_values("event_time").groupby("user_session")["event_time"].diff().dt.total_seconds().dropna()
    assert 25 < gaps.median() < 45  # the sample: 33 s
    assert 0.25 < e["category_code"].isna().mean() < 0.45  # the sample: a third without a code
    assert 0.05 < e["brand"].isna().mean() < 0.25  # the sample: 14 %
    assert e.loc[e["category_code"] == "electronics.smartphone", "price"].median() == pytest.approx(287, rel=0.35)


def test_streaming_writes_chunks_to_parquet(tmp_path: Path) -> None:
    files = write_event_shop(tmp_path / "shop", n_customers=100, seed=5, chunk_customers=30)
    meta = pq.ParquetFile(files.events).metadata
    assert meta.num_row_groups == 4  # one row group per chunk: 30 + 30 + 30 + 10 customers
    expected = sum(t[0].num_rows for t in iter_event_chunks(100, seed=5, chunk_customers=30))
    assert meta.num_rows == files.counts["events"] == expected
    assert pq.read_table(files.truth).num_rows == 100
    assert files.orders is not None and files.customers is not None
    assert sorted(p.name for p in (tmp_path / "shop").iterdir()) == [
        "customers.parquet",
        "events.parquet",
        "orders.parquet",
        "truth.parquet",
    ]


@pytest.mark.slow
def test_planted_behaviour_segments_recovered_from_events(tmp_path: Path) -> None:
    files = write_event_shop(tmp_path / "shop", n_customers=2000, seed=0, orders=False, customers=False)
    out = tmp_path / "run"
    assert main(["run", "--events", str(files.events), "--out", str(out), "--quiet"]) == 0
    seg = pd.read_parquet(out / "segments.parquet")
    truth = pd.read_parquet(files.truth).assign(customer_id=lambda d: d["user_id"].astype(str))
    m = seg.merge(truth, on="customer_id")
    assert len(m) == len(truth) == len(seg)  # every customer kept, also those who never bought
    assert adjusted_rand_score(m["segment_y"], m["segment_x"]) >= 0.85
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["segmentation"]["features"][:2] == ["views", "view_to_cart_rate"]
    rows = manifest["rows"]
    assert rows["input_rows"] == rows["clean_rows"] + rows["quarantined_rows"] == files.counts["events"]
    # insights: the funnel counts the events directly
    events = pd.read_parquet(files.events)
    insights = json.loads((out / "insights.json").read_text())
    assert [r["events"] for r in insights["funnel"]] == [
        int((events["event_type"] == t).sum()) for t in ("view", "cart", "purchase")
    ]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Shop insights" in html and "Funnel" in html


@pytest.mark.slow
def test_orders_events_and_customers_together(tmp_path: Path) -> None:
    files = write_event_shop(tmp_path / "shop", n_customers=600, seed=2, banners=True, days=60)
    assert files.orders is not None and files.customers is not None
    result = shopseg.run([files.orders, files.events, files.customers], tmp_path / "run")
    m = result.manifest
    by = m["rows"]["by_source"]
    assert by["events"]["input_rows"] == by["events"]["clean_rows"] + by["events"]["quarantined_rows"]
    assert by["events"]["input_rows"] == files.counts["events"]
    assert by["orders"]["input_rows"] == files.counts["order_lines"]
    assert {i["role"] for i in m["inputs"]} >= {"orders", "events"}
    seg = result.segments
    # customers with events but no order are kept, with the documented fills
    no_orders = seg[seg["has_orders"] == 0]
    assert len(no_orders) > 0 and (no_orders["frequency"] == 0).all()
    window = no_orders["recency_days"].iloc[0]
    assert (no_orders["recency_days"] == window).all() and window >= no_orders["days_since_first_event"].max() - 1
    assert len(seg) == pd.read_parquet(files.truth)["user_id"].nunique()
    q = pd.read_parquet(tmp_path / "run" / "quarantine.parquet")
    assert "source_table" in q.columns
    # the follow-up share against a direct computation from the run's tables
    f = json.loads((tmp_path / "run" / "insights.json").read_text())["rec_followup"]
    con = duckdb.connect(str(tmp_path / "run" / "shopseg.duckdb"), read_only=True)
    tx = con.execute("SELECT customer_id, product_id, ts FROM transactions").df()
    segs = con.execute("SELECT customer_id, segment FROM segments").df()
    con.close()
    as_of = pd.Timestamp(m["as_of"])
    cutoff = as_of - pd.Timedelta(days=30)
    p = tx.merge(segs, on="customer_id")
    before = p[p["ts"] < cutoff].drop_duplicates(["customer_id", "product_id", "segment"])
    top = (
        before.groupby(["segment", "product_id"]).size().rename("n").reset_index()
        .sort_values(["segment", "n", "product_id"], ascending=[True, False, True])
        .groupby("segment").head(20)
    )  # fmt: skip
    after = p[(p["ts"] >= cutoff) & (p["ts"] < as_of)].drop_duplicates(["customer_id", "product_id"])
    hits = after.merge(top, on=["segment", "product_id"])["customer_id"].nunique()
    assert f["buyers_after_cutoff"] == after["customer_id"].nunique() > 0
    assert f["bought_segment_product"] == hits
    assert f["share"] == pytest.approx(hits / after["customer_id"].nunique())
    # a banner table per segment and generated slot, covering every segmented customer once per slot
    b = pd.read_csv(tmp_path / "run" / "banners.csv")
    assert len(b) == len(result.profiles) * b["slot"].nunique() and b["slot"].nunique() >= 2
    assert set(b.groupby("slot")["customers"].sum()) == {len(seg)}
    # activity per customer attribute: each attribute's values add up to the run's customers and purchases
    ins = json.loads((tmp_path / "run" / "insights.json").read_text())
    act = pd.DataFrame(ins["attribute_activity"])
    n_purchases = next(r["events"] for r in ins["funnel"] if r["stage"] == "purchase")
    gender = act[act["attribute"] == "gender"]
    assert gender["customers"].sum() == len(pd.read_parquet(files.customers))
    assert gender["purchases"].sum() == n_purchases and gender["buyers"].sum() == tx["customer_id"].nunique()


@pytest.mark.slow
def test_rees46_sample_end_to_end(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "rees46_2019oct_head" / "rees46_2019oct_head.parquet"
    result = shopseg.run([path], tmp_path / "run")  # recognised as events by its columns
    rows = result.manifest["rows"]
    assert (rows["input_rows"], rows["clean_rows"], rows["by_rule"]["duplicate"]) == (17434, 17429, 5)
    assert rows["customers"] == 4504
    assert len(result.profiles) >= 2
    raw = pd.read_parquet(path).drop_duplicates()
    insights = json.loads((tmp_path / "run" / "insights.json").read_text())
    assert [r["events"] for r in insights["funnel"]] == [
        int(np.sum(raw["event_type"] == t)) for t in ("view", "cart", "purchase")
    ]
    b = pd.read_csv(tmp_path / "run" / "banners.csv")  # no banner events: one configured slot, every customer
    assert len(b) == len(result.profiles) and b["customers"].sum() == 4504 and (b["slot"] == "main").all()
    assert b["rates_from"].str.startswith("ctr: config, conversion: config").all()


def test_run_without_any_input_names_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--quiet"]) == 2
    assert "--events FILE" in capsys.readouterr().err
