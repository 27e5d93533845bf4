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


# ------------------------------------------------------------------------------------------ coupon activity


def _coupon_shop(backend: DuckDBBackend, *, timed: bool) -> None:
    """Three customers of a customer table (a Cairo/Female, b Cairo/Male, c Giza/Male; d Giza without any coupon)
    and five coupon transactions: a takes 2 (one burned 10 days later), b takes 2 (both burned, 2 and 4 days
    later), c takes 1 (subscribed). 2024-03-04 is a Monday."""
    backend.create_table(
        "customers",
        pd.DataFrame(
            {
                "customer_id": list("abcd"),
                "city": ["Cairo", "Cairo", "Giza", "Giza"],
                "gender": ["Female", "Male", "Male", "Male"],
            }
        ),
    )
    backend.execute("CREATE TABLE customers_flagged AS SELECT *, NULL AS _reason FROM customers")
    h = 14 if timed else 0
    rows = [
        # customer, id, ts, status, burn_ts, merchant
        ("a", "1", datetime(2024, 3, 4, h), "burned", datetime(2024, 3, 14), "Nile Foods"),  # Monday, March
        ("a", "2", datetime(2024, 4, 2, h), "subscribed", None, "Nile Foods"),  # Tuesday, April
        ("b", "3", datetime(2024, 3, 5, h), "burned", datetime(2024, 3, 7), "Delta"),  # Tuesday, March
        ("b", "4", datetime(2024, 4, 8, h), "Burned", datetime(2024, 4, 12), "Nile Foods"),  # Monday, April
        ("c", "5", datetime(2024, 4, 10, h), "subscribed", None, "Delta"),  # Wednesday, April
    ]
    backend.create_table(
        "coupons",
        pd.DataFrame(rows, columns=["customer_id", "event_id", "ts", "status", "burn_ts", "merchant"]),
    )


def test_coupon_insights_by_hand(backend: DuckDBBackend) -> None:
    _coupon_shop(backend, timed=False)
    ins = compute_insights(backend, holdout_days=10)
    assert ins.source == "coupons" and ins.as_of == datetime(2024, 4, 11)
    assert ins.funnel is None and ins.rec_followup is None
    f = ins.coupon_funnel
    assert f is not None
    assert f["stage"].tolist() == ["customers in the table", "took a coupon", "burned a coupon"]
    assert f["customers"].tolist() == [4, 3, 2] and f["transactions"].tolist() == [5, 5, 3]
    assert f["customer_rate"].tolist()[1:] == pytest.approx([3 / 4, 2 / 3])
    assert f["transaction_rate"].iloc[2] == pytest.approx(3 / 5)  # the burn rate ('Burned' counts: any case)
    assert ins.coupon_hours is None and any("without a time of day" in n for n in ins.notes)
    assert any("median 4 days" in n for n in ins.notes)  # 10, 2, 4 days to burn
    d = ins.coupon_weekdays
    assert d is not None and len(d) == 7
    assert d.set_index("day")["transactions"].to_dict() == {
        "Monday": 2,
        "Tuesday": 2,
        "Wednesday": 1,
        "Thursday": 0,
        "Friday": 0,
        "Saturday": 0,
        "Sunday": 0,
    }
    assert d.set_index("day").loc["Monday", "burned"] == 2
    # burns by the burn date's weekday: 2024-03-14 Thursday, 2024-03-07 Thursday, 2024-04-12 Friday
    assert d.set_index("day")["burns_on_day"].to_dict()["Thursday"] == 2
    assert d["burns_on_day"].sum() == 3
    m = ins.coupon_months
    assert m is not None
    assert m[["month", "transactions", "burned", "customers", "first_time"]].values.tolist() == [
        ["2024-03", 2, 2, 2, 2],
        ["2024-04", 3, 1, 3, 1],
    ]
    top = ins.coupon_top
    assert top is not None
    assert top[["value", "transactions", "burned", "customers"]].values.tolist() == [
        ["Nile Foods", 3, 2, 2],
        ["Delta", 2, 1, 2],
    ]
    u = ins.coupon_customers
    assert u is not None
    # all data: c took one coupon, a and b two; last 10 days (from 04-01) to 2024-04-11: c new (first 04-10),
    # a (04-02) and b (04-08) returning: they took one in March
    assert u[["period", "kind", "customers", "transactions"]].values.tolist() == [
        ["all data", "one coupon transaction", 1, 1],
        ["all data", "returning (2+ coupon transactions)", 2, 4],
        ["last 10 days to 2024-04-11", "new (first coupon in the window)", 1, 1],
        ["last 10 days to 2024-04-11", "returning (took one before)", 2, 2],
    ]
    a = ins.attribute_activity
    assert a is not None
    got = {
        (r.attribute, r.value): (r.customers, r.coupon_users, r.coupon_transactions, r.coupons_burned)
        for r in a.itertuples()
    }
    assert got == {
        ("city", "Cairo"): (2, 2, 4, 3),
        ("city", "Giza"): (2, 1, 1, 0),
        ("gender", "Male"): (3, 2, 3, 2),
        ("gender", "Female"): (1, 1, 2, 1),
    }
    assert a.set_index("value").loc["Cairo", "burn_rate"] == pytest.approx(0.75)


def test_coupon_hours_only_when_times_have_a_time_of_day(backend: DuckDBBackend) -> None:
    _coupon_shop(backend, timed=True)
    ins = compute_insights(backend, as_of=datetime(2024, 5, 1), burned_values=["burned"])
    assert ins.coupon_hours is not None
    assert ins.coupon_hours.set_index("hour")["transactions"].to_dict()[14] == 5
    assert ins.coupon_hours["transactions"].sum() == 5
    f = ins.coupon_funnel
    assert f is not None and f["transactions"].tolist() == [5, 5, 3]
    # an as-of date before some transactions leaves them out
    early = compute_insights(backend, as_of=datetime(2024, 4, 1))
    assert early.coupon_funnel is not None and early.coupon_funnel["transactions"].tolist() == [2, 2, 2]


def test_coupon_insights_match_the_lookalike_workbook_rows(backend: DuckDBBackend, tmp_path: Path) -> None:
    """The committed coupon look-alike, ingested and cleaned: every coupon figure equals a count of the
    generator's own rows (its quirk rows, quarantined, are left out)."""
    import importlib.util

    from shopseg.clean.customers import clean_customers
    from shopseg.ingest.customers import ingest_customers

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("lookalike", root / "scripts" / "make_coupon_lookalike.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    sheets, truth = gen.build()
    ing = ingest_customers(backend, [root / "tests" / "data" / "coupons_lookalike.xlsx"], work=tmp_path / "w")
    clean_customers(backend, ing)
    ins = compute_insights(backend)
    header, *rows = sheets["transactions"]
    tx = pd.DataFrame(rows, columns=header)
    tx = tx[tx["customer_id"].isin(list(truth))]
    tx = tx[tx["transaction_status"].isin(["burned", "subscribed"])]
    tx = tx[pd.to_datetime(tx["transaction_date"], errors="coerce").notna()].drop_duplicates("transaction_id")
    assert len(tx) == 825  # the run's clean coupon rows (test_customers)
    burned = tx[tx["transaction_status"] == "burned"]
    f = ins.coupon_funnel
    assert f is not None
    assert f["customers"].tolist() == [150, tx["customer_id"].nunique(), burned["customer_id"].nunique()]
    assert f["transactions"].tolist() == [825, 825, len(burned)]
    days = pd.to_datetime(tx["transaction_date"]).dt.day_of_week + 1
    assert ins.coupon_weekdays is not None
    assert ins.coupon_weekdays["transactions"].tolist() == [int((days == d).sum()) for d in range(1, 8)]
    assert ins.coupon_months is not None and ins.coupon_months["transactions"].sum() == 825
    merchants = dict(zip(*zip(*sheets["merchants"][1:], strict=True), strict=True))
    branch_merchant = {b: merchants[m] for b, m in sheets["branches"][1:]}
    by_merchant = tx["branch_id"].map(branch_merchant).value_counts()
    assert ins.coupon_top is not None
    top = ins.coupon_top[ins.coupon_top["dimension"] == "merchant"].set_index("value")["transactions"]
    assert top.to_dict() == by_merchant.to_dict()
    a = ins.attribute_activity
    assert a is not None
    for attr in ("gender", "city"):  # every customer and coupon falls under one value of each attribute
        part = a[a["attribute"] == attr]
        assert part["customers"].sum() == 150 and part["coupon_transactions"].sum() == 825


def test_insights_cli_on_a_coupon_workbook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = Path(__file__).parent / "data" / "coupons_lookalike.xlsx"
    assert main(["insights", str(book), "--out", str(tmp_path / "ins")]) == 0
    text = capsys.readouterr().out
    assert "coupon funnel" in text and "attribute activity" in text
    data = load_insights(tmp_path / "ins")
    assert data["source"] == "coupons"
    assert data["coupon_funnel"][0]["transactions"] == 825  # the clean coupon rows
