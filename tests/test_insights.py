"""Shop insights: funnel counts against direct counts of the rows, hours, weekdays, devices, top lists and buyers
checked against values worked out by hand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from events_support import AS_OF, HAND
from shopseg.backends import DuckDBBackend
from shopseg.clean import clean_transactions
from shopseg.clean.events import clean_events
from shopseg.cli import main
from shopseg.config import InputConfig
from shopseg.ingest import ingest_transactions
from shopseg.ingest.events import ingest_events
from shopseg.insights import Insights, compute_insights, load_insights, shop_insights

EVENTS = Path(__file__).parent / "data" / "events"


def _events_insights(backend: DuckDBBackend, path: Path, work: Path, as_of: datetime | None = None) -> Insights:
    ing = ingest_events(backend, [path], work=work)
    clean_events(backend, ing)
    return compute_insights(backend, as_of=as_of)


def _direct_funnel(frame: pd.DataFrame) -> dict[str, int]:
    counts = frame.drop_duplicates()["event_type"].value_counts()
    return {t: int(counts.get(t, 0)) for t in ("view", "cart", "purchase")}


def test_rees46_sample_funnel_matches_a_direct_count(backend: DuckDBBackend, shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "rees46_2019oct_head" / "rees46_2019oct_head.parquet"
    raw = pd.read_parquet(path)
    assert len(raw) - len(raw.drop_duplicates()) == 5  # the sample's 5 exact duplicates
    ins = _events_insights(backend, path, tmp_path / "w")
    assert ins.funnel is not None
    got = dict(zip(ins.funnel["stage"], ins.funnel["events"], strict=True))
    assert got == _direct_funnel(raw) == {"view": 17051, "cart": 164, "purchase": 214}
    buyers = raw.drop_duplicates().query("event_type == 'purchase'")["user_id"].nunique()
    assert ins.funnel.set_index("stage").loc["purchase", "customers"] == buyers == 193


def test_rees46_lookalike_funnel_matches_a_direct_count(backend: DuckDBBackend, tmp_path: Path) -> None:
    path = EVENTS / "rees46_lookalike.csv.gz"
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert len(raw) - len(raw.drop_duplicates()) == 5
    ins = _events_insights(backend, path, tmp_path / "w")
    assert ins.funnel is not None
    assert dict(zip(ins.funnel["stage"], ins.funnel["events"], strict=True)) == _direct_funnel(raw)
    sessions = raw.drop_duplicates().groupby("event_type")["user_session"].nunique()
    assert ins.funnel.set_index("stage").loc["cart", "sessions"] == sessions["cart"]


@pytest.fixture
def hand(backend: DuckDBBackend, write_file: Callable[..., Path], tmp_path: Path) -> Insights:
    return _events_insights(backend, write_file("hand.csv", HAND), tmp_path / "w", AS_OF)


def test_hand_funnel(hand: Insights) -> None:
    assert hand.funnel is not None
    f = hand.funnel.set_index("stage")
    assert list(f["events"]) == [7, 3, 2]
    assert list(f["sessions"]) == [5, 3, 2]
    assert list(f["customers"]) == [3, 2, 2]
    assert list(f["event_rate"]) == pytest.approx([1.0, 3 / 7, 2 / 3])
    assert list(f["session_rate"]) == pytest.approx([1.0, 3 / 5, 2 / 5])


def test_hand_hours_and_peaks(hand: Insights) -> None:
    assert hand.hours is not None and hand.peak_hours is not None
    h = hand.hours.set_index("hour")
    assert len(h) == 24 and h["events"].sum() == 13
    assert {k: int(v) for k, v in h["events"].items() if v} == {2: 4, 10: 4, 11: 2, 14: 1, 20: 1, 23: 1}
    assert {k: int(v) for k, v in h["sessions"].items() if v} == {2: 1, 10: 1, 11: 1, 14: 1, 20: 1, 23: 1}
    assert h.loc[10, "conversion"] == 1.0 and h.loc[11, "conversion"] == 0.0
    assert pd.isna(h.loc[5, "conversion"])  # no session started at 05:00
    peaks = [(r.by, r.rank, r.hour, r.count) for r in hand.peak_hours.itertuples()]
    # ties go to the earlier hour
    assert peaks == [("events", 1, 2, 4), ("events", 2, 10, 4), ("events", 3, 11, 2), ("purchases", 1, 10, 1),
                     ("purchases", 2, 14, 1)]  # fmt: skip


def test_hand_weekdays_devices_and_top_lists(hand: Insights) -> None:
    assert hand.weekdays is not None
    w = hand.weekdays.set_index("day")
    assert {d: int(n) for d, n in w["events"].items() if n} == {"Saturday": 6, "Sunday": 4, "Monday": 1, "Tuesday": 2}
    assert w.loc["Tuesday", "revenue"] == 500.0 and w.loc["Saturday", "revenue"] == 200.0
    assert hand.devices is not None
    d = hand.devices.set_index("device")
    assert d["events"].to_dict() == {"Mobile Web": 4, "desktop": 4, "mobile": 4}
    assert d.loc[d["mobile"], "share_events"].sum() == pytest.approx(8 / 12)
    assert hand.top_categories_by_views is not None and hand.top_categories_by_revenue is not None
    assert hand.top_categories_by_views[["category", "views"]].values.tolist() == [["phones", 5], ["laptops", 2]]
    assert hand.top_categories_by_revenue[["category", "revenue"]].values.tolist() == [
        ["laptops", 500.0],
        ["phones", 200.0],
    ]
    assert hand.top_categories_by_revenue["share"].tolist() == pytest.approx([5 / 7, 2 / 7])
    assert hand.top_brands_by_views is not None
    assert hand.top_brands_by_views["brand"].tolist() == ["acme", "zen"]


def test_buyers_new_and_returning_from_orders(
    backend: DuckDBBackend, write_file: Callable[..., Path], tmp_path: Path
) -> None:
    text = (
        "InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID,Category\n"
        "1,P1,1,2024-01-01 09:00,10,X,toys\n1,P2,2,2024-01-01 09:00,5,X,books\n"
        "2,P1,1,2024-03-01 09:30,10,X,toys\n3,P1,3,2024-03-02 15:00,10,Y,toys\n"
    )
    ing = ingest_transactions(backend, [write_file("o.csv", text)], InputConfig(), work=tmp_path / "w")
    clean_transactions(backend, ing)
    ins = compute_insights(backend, as_of=datetime(2024, 3, 3), holdout_days=30)
    assert ins.source == "orders" and ins.funnel is None
    assert ins.hours is not None and ins.peak_hours is not None
    assert {k: int(v) for k, v in ins.hours.set_index("hour")["orders"].items() if v} == {9: 2, 15: 1}
    assert ins.peak_hours.iloc[0][["hour", "count"]].tolist() == [9, 2]
    assert ins.buyers is not None
    b = ins.buyers.set_index(["period", "kind"])
    assert b.loc[("all data", "returning (2+ purchases)"), "buyers"] == 1
    assert b.loc[("all data", "new (one purchase)"), "revenue"] == 30.0
    assert b.loc[("last 30 days", "returning (bought before)"), "revenue"] == 10.0  # X, only the window's order
    assert b.loc[("last 30 days", "new (first purchase in the window)"), "buyers"] == 1
    assert ins.top_categories_by_revenue is not None
    assert ins.top_categories_by_revenue[["category", "revenue"]].values.tolist() == [["toys", 50.0], ["books", 10.0]]


def test_insights_cli_on_input_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ins"
    assert main(["insights", str(EVENTS / "rees46_layout.csv"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "funnel" in text and "peak hours" in text
    data = load_insights(out)
    assert [r["events"] for r in data["funnel"]] == [3, 1, 1]
    assert data["source"] == "events"


def test_shop_insights_needs_an_output_folder_for_files() -> None:
    from shopseg.errors import InputError

    with pytest.raises(InputError, match="--out"):
        shop_insights([EVENTS / "rees46_layout.csv"])
