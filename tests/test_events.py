"""Events: mapping of the common layouts, cleaning with an exact reconciliation, and behavioural features
checked against values computed by hand on a 17-row event table."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from events_support import AS_OF, HAND
from shopseg.backends import DuckDBBackend
from shopseg.clean.events import EVENT_RULES, clean_events, combine_quarantine
from shopseg.config import EventsConfig, load_config
from shopseg.errors import ConfigError, SchemaError
from shopseg.features.events import (
    DEFAULT_EVENT_SEGMENT_FEATURES,
    EVENT_FEATURES,
    build_event_features,
    default_segment_features,
)
from shopseg.ingest import IngestResult
from shopseg.ingest.events import event_type_map, ingest_events, split_inputs
from shopseg.schema import EVENT_TYPES, source_role

EVENTS = Path(__file__).parent / "data" / "events"
IngestEvents = Callable[..., IngestResult]


@pytest.fixture
def ingest_ev(backend: DuckDBBackend, tmp_path: Path) -> IngestEvents:
    def run(inputs: list[str | Path] | str | Path, **cfg: object) -> IngestResult:
        items = inputs if isinstance(inputs, list) else [inputs]
        return ingest_events(backend, items, EventsConfig(**cfg), work=tmp_path / "work")  # type: ignore[arg-type]

    return run


@pytest.fixture
def hand_features(backend: DuckDBBackend, ingest_ev: IngestEvents, write_file: Callable[..., Path]) -> pd.DataFrame:
    ing = ingest_ev(write_file("hand.csv", HAND))
    result = clean_events(backend, ing)
    assert result.clean_rows == 13
    fs = build_event_features(backend, AS_OF, present_columns=set(ing.mapping.source))
    return fs.frame.set_index("customer_id")


def _entropy(*counts: int) -> float:
    n = sum(counts)
    return -sum(c / n * math.log2(c / n) for c in counts)


def _gmean(*x: float) -> float:
    return math.exp(sum(math.log(v) for v in x) / len(x))


def test_hand_computed_counts_sessions_and_conversions(hand_features: pd.DataFrame) -> None:
    a, b, c = (hand_features.loc[k] for k in "ABC")
    assert (a.n_events, a.views, a.carts, a.purchases, a.cart_removals) == (7, 4, 2, 1, 0)
    assert (a.sessions, a.active_days) == (3, 2)
    assert a.events_per_session == pytest.approx(7 / 3)
    # sessions of A: 10:00-10:50 (50 min), 11:20:01-11:25 (4 min 59 s), 20:00 (0)
    assert a.session_duration_max == pytest.approx(50.0)
    assert a.session_duration_total == pytest.approx(50 + 299 / 60)
    assert a.session_duration_mean == pytest.approx((50 + 299 / 60) / 3)
    assert a.view_to_cart_rate == pytest.approx(0.5)
    assert a.cart_to_purchase_rate == pytest.approx(0.5)
    assert a.view_to_purchase_rate == pytest.approx(0.25)
    assert a.cart_abandonment_rate == pytest.approx(0.5)  # the laptop session ends without a purchase
    assert (b.views, b.carts, b.cart_removals, b.purchases, b.sessions) == (2, 1, 1, 1, 2)
    assert (b.view_to_cart_rate, b.cart_to_purchase_rate, b.view_to_purchase_rate) == (0.5, 1.0, 0.5)
    assert b.cart_abandonment_rate == 1.0  # its only cart session has no purchase
    assert (c.views, c.purchases, c.sessions, c.view_to_purchase_rate, c.cart_abandonment_rate) == (1, 0, 1, 0, 0)


def test_hand_computed_breadth_loyalty_and_price_level(hand_features: pd.DataFrame) -> None:
    a, b, c = (hand_features.loc[k] for k in "ABC")
    # A: 5 events on phones, 2 on laptops; 5 on acme, 2 on zen
    assert a.category_entropy == pytest.approx(_entropy(5, 2))
    assert a.top_brand_share == pytest.approx(5 / 7)
    assert (a.distinct_categories_viewed, a.distinct_categories_bought) == (2, 1)
    assert (a.distinct_brands_viewed, a.distinct_brands_bought) == (2, 1)
    assert a.top_category == "phones"
    assert c.category_entropy == 0.0 and c.top_brand_share == 1.0
    # category medians over products: phones {100, 200, 400} -> 200; laptops {1000, 500} -> 750
    assert a.premium_index_viewed == pytest.approx(_gmean(100 / 200, 200 / 200, 1000 / 750, 100 / 200))
    assert a.premium_index_bought == pytest.approx(1.0)
    assert b.premium_index_viewed == pytest.approx(_gmean(400 / 200, 500 / 750))
    assert b.premium_index_bought == pytest.approx(500 / 750)
    assert c.premium_index_bought == 1.0  # never bought: the neutral fill
    assert a.mean_viewed_price == pytest.approx((100 + 200 + 1000 + 100) / 4)
    assert (a.spend, a.purchase_count, a.avg_purchase_value) == (200.0, 1, 200.0)
    assert (c.spend, c.purchase_count, c.avg_purchase_value) == (0.0, 0, 0.0)


def test_hand_computed_time_features(hand_features: pd.DataFrame) -> None:
    a, b, c = (hand_features.loc[k] for k in "ABC")
    day = 86400.0
    assert a.days_since_last_event == pytest.approx(28 * 3600 / day)  # 2024-01-08 20:00 -> 01-10 00:00
    assert a.days_since_last_purchase == pytest.approx((3 * day + 13 * 3600 + 10 * 60) / day)
    assert a.days_since_first_event == pytest.approx((3 * day + 14 * 3600) / day)
    # C never bought: the window from the first event in the data (01-06 10:00) to as_of
    assert c.days_since_last_purchase == pytest.approx((3 * day + 14 * 3600) / day)
    assert (a.morning_share, a.evening_share, a.night_share, a.afternoon_share) == pytest.approx((6 / 7, 1 / 7, 0, 0))
    assert a.weekend_share == pytest.approx(6 / 7)  # 2024-01-06 is a Saturday
    assert (b.night_share, b.afternoon_share, b.weekend_share) == pytest.approx((4 / 5, 1 / 5, 4 / 5))
    assert a.mobile_share == pytest.approx(4 / 7)
    assert b.mobile_share == pytest.approx(4 / 5)  # 'Mobile Web' is mobile
    assert c.mobile_share == 0.0  # no device known


def test_at_least_32_registered_features_with_descriptions(hand_features: pd.DataFrame) -> None:
    numeric = [f for f in EVENT_FEATURES if f.numeric]
    assert len(numeric) >= 32
    assert all(f.description and f.unit for f in EVENT_FEATURES)
    assert [f.name for f in EVENT_FEATURES] == [c for c in hand_features.reset_index().columns if c != "customer_id"]
    assert not hand_features[[f.name for f in numeric]].isna().any().any()  # fills are applied in SQL


def test_customers_without_purchases_are_kept(hand_features: pd.DataFrame) -> None:
    assert sorted(hand_features.index) == ["A", "B", "C"]


# ------------------------------------------------------------------------------------------ layouts


def test_rees46_layout(backend: DuckDBBackend, ingest_ev: IngestEvents) -> None:
    ing = ingest_ev(EVENTS / "rees46_layout.csv")
    assert ing.mapping.source == {
        "customer_id": "user_id",
        "session_id": "user_session",
        "ts": "event_time",
        "event_type": "event_type",
        "product_id": "product_id",
        "category": "category_code",
        "category_id": "category_id",
        "brand": "brand",
        "price": "price",
    }
    clean_events(backend, ing)
    df = backend.df("SELECT * FROM events ORDER BY ts")
    assert df["ts"].iloc[0] == pd.Timestamp("2019-10-01 00:00:00")
    # an empty category code falls back to the category id
    assert df["category"].iloc[0] == "2103807459595387724"
    assert df["category"].iloc[1] == "electronics.smartphone"
    assert list(df["event_type"]) == ["view", "view", "cart", "purchase", "view"]
    assert df["customer_id"].iloc[0] == "541312140"


def test_retailrocket_layout(backend: DuckDBBackend, ingest_ev: IngestEvents) -> None:
    ing = ingest_ev(EVENTS / "retailrocket_layout.csv")
    assert ing.mapping.source == {
        "customer_id": "visitorid",
        "ts": "timestamp",
        "event_type": "event",
        "product_id": "itemid",
        "order_id": "transactionid",
    }
    assert ing.mapping.date_format == "epoch"
    clean_events(backend, ing)
    df = backend.df("SELECT * FROM events ORDER BY ts, product_id")
    assert df["ts"].iloc[0] == pd.Timestamp("2015-06-02 05:02:12.117")  # epoch milliseconds, UTC
    assert df["event_type"].value_counts().to_dict() == {"view": 3, "cart": 1, "purchase": 2}
    # no session column: sessions by inactivity; the two purchases share the order id
    assert set(df.loc[df["event_type"] == "purchase", "order_id"]) == {"9725"}
    fs = build_event_features(backend, datetime(2015, 6, 3), present_columns=set(ing.mapping.source))
    f = fs.frame.set_index("customer_id")
    assert f.loc["111016", "purchase_count"] == 1  # one order of two items
    assert f.loc["111016", "purchases"] == 2
    assert f.loc["111016", "sessions"] == 1
    assert "spend" in fs.skipped and "premium_index_viewed" in fs.skipped  # no price column


def test_ga4_layout(backend: DuckDBBackend, ingest_ev: IngestEvents) -> None:
    ing = ingest_ev(EVENTS / "ga4_layout.csv")
    src = ing.mapping.source
    assert (src["customer_id"], src["ts"], src["event_type"], src["session_id"]) == (
        "user_pseudo_id",
        "event_timestamp",
        "event_name",
        "ga_session_id",
    )
    assert (src["product_id"], src["brand"], src["category"], src["device"]) == (
        "item_id",
        "item_brand",
        "item_category",
        "device_category",
    )
    result = clean_events(backend, ing)
    assert result.reconciliation.set_index("code").loc["unknown_event_type", "rows"] == 1  # 'scroll'
    df = backend.df("SELECT * FROM events ORDER BY ts")
    assert df["ts"].iloc[0] == pd.Timestamp("2021-01-31 05:05:10.766593")  # epoch microseconds
    assert list(df["event_type"]) == ["view", "view", "cart", "purchase", "banner_view", "banner_click"]
    assert df["customer_id"].iloc[-1] == "2055555.1234"


def test_event_type_names() -> None:
    m = event_type_map({"Wish List": "cart"})
    for raw, canon in {
        "addtocart": "cart",
        "add_to_cart": "cart",
        "Add To Cart": "cart",
        "add-to-cart": "cart",
        "transaction": "purchase",
        "remove_from_cart": "remove_from_cart",
        "pv": "view",
        "view_item": "view",
        "select_promotion": "banner_click",
        "wish list": "cart",
    }.items():
        assert m[raw.lower().replace(" ", "_").replace("-", "_")] == canon
    assert set(m.values()) <= set(EVENT_TYPES)
    assert "scroll" not in m


def test_missing_event_type_column_names_the_fix(ingest_ev: IngestEvents, write_file: Callable[..., Path]) -> None:
    path = write_file("e.csv", "user_id,event_time,product\n1,2024-01-01 10:00:00,p\n")
    with pytest.raises(SchemaError, match=r"event_type.*\[events\.columns\] event_type"):
        ingest_ev(path)
    ing = ingest_ev(
        write_file("f.csv", "who,when,what\n1,2024-01-01 10:00:00,view\n"),
        columns={"customer_id": "who", "ts": "when", "event_type": "what"},
    )
    assert ing.mapping.how["event_type"] == "explicit"


def test_config_validates_event_names() -> None:
    with pytest.raises(ConfigError, match="unknown canonical event type"):
        load_config(overrides={"events.event_types": {"like": "love"}})
    with pytest.raises(ConfigError, match="unknown canonical event column"):
        load_config(overrides={"events.columns": {"visitor": "x"}})


# ------------------------------------------------------------------------------------------ roles


def test_source_role_rule() -> None:
    assert source_role(["event_time", "event_type", "product_id", "price", "user_id", "user_session"]) == "events"
    assert source_role(["timestamp", "visitorid", "event", "itemid", "transactionid"]) == "events"
    assert source_role(["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]) == "orders"
    assert source_role(["customer_id", "gender", "city", "join_date"]) == "customers"
    assert source_role(["customer_id", "order_date", "amount"]) == "orders"
    assert source_role(["column0", "column1", "column2"]) == "orders"


def test_split_inputs_by_columns(write_file: Callable[..., Path], sample_csv: Path) -> None:
    cust = write_file("people.csv", "customer_id;gender;city\n1;F;Cairo\n")
    roles = split_inputs([EVENTS / "rees46_layout.csv", sample_csv, cust])
    assert roles == {
        "orders": [str(sample_csv)],
        "events": [str(EVENTS / "rees46_layout.csv")],
        "customers": [str(cust)],
    }
    # header-less or hand-named files stay orders, as before roles existed
    from shopseg.config import InputConfig

    assert split_inputs([cust], InputConfig(header=False))["orders"] == [str(cust)]


# ------------------------------------------------------------------------------------------ cleaning

DIRTY = """user_id,event_time,event_type,product_id,price,user_session
u1,2024-01-01 10:00:00,view,p1,10,s1
u1,2024-01-01 10:00:00,view,p1,10,s1
,2024-01-01 10:01:00,view,p1,10,s2
u2,yesterday,view,p1,10,s3
u2,2024-01-01 10:02:00,wishlist,p1,10,s3
u2,2024-01-01 10:03:00,purchase,p1,0,s3
u2,2024-01-01 10:04:00,purchase,p1,,s3
u2,2024-01-01 10:05:00,view,p2,abc,s3
u2,2024-01-01 10:06:00,view,p2,0,s3
u3,2024-01-01 10:07:00,purchase,p2,12.5,
u3,2024-01-01 10:07:00,purchase,p2,12.5,
"""


def test_cleaning_rules_and_exact_reconciliation(
    backend: DuckDBBackend, ingest_ev: IngestEvents, write_file: Callable[..., Path]
) -> None:
    ing = ingest_ev(write_file("dirty.csv", DIRTY))
    result = clean_events(backend, ing)
    by = result.reconciliation.set_index("code")["rows"].to_dict()
    assert by == {
        "bad_timestamp": 1,
        "missing_customer": 1,
        "unknown_event_type": 1,
        "bad_price": 1,
        "non_positive_price": 2,  # a purchase at 0 and one without a price; a view at 0 is kept
        "duplicate": 2,
        "malformed_line": 0,
        "clean": 3,
    }
    assert result.input_rows == 11 == result.clean_rows + result.quarantined_rows
    q = backend.df("SELECT * FROM events_quarantine ORDER BY _row_id")
    assert list(q["_row_id"]) == [2, 3, 4, 5, 6, 7, 8, 11]
    assert q.set_index("_row_id").loc[5, "event_type"] == "wishlist"  # raw values are kept
    assert set(q["source_table"]) == {"events"}
    # the row without a session id gets one from inactivity; the rest keep theirs
    ev = backend.df("SELECT customer_id, session_id FROM events ORDER BY customer_id, ts")
    assert list(ev["session_id"]) == ["s1", "s3", "u3#1"]
    assert [r.code for r in EVENT_RULES][-1] == "duplicate"


def test_parquet_files_are_read_in_place_with_row_numbers(
    backend: DuckDBBackend, ingest_ev: IngestEvents, tmp_path: Path
) -> None:
    frame = pd.read_csv(io.StringIO(DIRTY), dtype={"price": "string"})
    frame["price"] = pd.to_numeric(frame["price"], errors="coerce")
    frame["event_time"] = pd.to_datetime(frame["event_time"], errors="coerce")
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    frame.iloc[:6].to_parquet(first)
    frame.iloc[6:].to_parquet(second)
    ing = ingest_ev([first, second])
    assert backend.scalar("SELECT table_type FROM information_schema.tables WHERE table_name = 'raw_events'") == "VIEW"
    result = clean_events(backend, ing)
    assert result.input_rows == 11 == result.clean_rows + result.quarantined_rows
    q = backend.df("SELECT _row_id, reason, source, user_id FROM events_quarantine ORDER BY _row_id")
    # row numbers run across both files in input order; the raw values come back with them
    assert list(q["_row_id"]) == [2, 3, 4, 5, 6, 7, 11]
    assert q.set_index("_row_id").loc[11, "reason"] == "duplicate" and q.set_index("_row_id").loc[11, "user_id"] == "u3"
    assert q.set_index("_row_id").loc[7, "source"].endswith("b.parquet")
    assert pd.isna(q.set_index("_row_id").loc[3, "user_id"])  # the row without a user id


def test_event_types_from_config_are_kept(
    backend: DuckDBBackend, ingest_ev: IngestEvents, write_file: Callable[..., Path]
) -> None:
    ing = ingest_ev(write_file("dirty.csv", DIRTY), event_types={"wishlist": "cart"})
    result = clean_events(backend, ing)
    assert result.reconciliation.set_index("code").loc["unknown_event_type", "rows"] == 0
    assert backend.scalar("SELECT count(*) FROM events WHERE event_type = 'cart'") == 1


def test_one_quarantine_for_orders_and_events(
    backend: DuckDBBackend,
    ingest_ev: IngestEvents,
    write_file: Callable[..., Path],
    ingest_clean: Callable[..., tuple[IngestResult, object]],
) -> None:
    orders = write_file(
        "orders.csv",
        "InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID\n1,A,1,2024-01-01 10:00,2.5,7\n"
        "2,A,1,2024-01-01 11:00,2.5,\n",
    )
    ingest_clean(orders)
    ing = ingest_ev(write_file("dirty.csv", DIRTY))
    clean_events(backend, ing)
    combine_quarantine(backend, orders=True, events=True)
    q = backend.df("SELECT * FROM quarantine")
    assert q.groupby("source_table").size().to_dict() == {"events": 8, "orders": 1}
    assert {"_row_id", "reason", "source", "raw_line", "InvoiceNo", "event_type"} <= set(q.columns)
    assert q.loc[q["source_table"] == "orders", "reason"].tolist() == ["missing_customer"]


def test_default_segment_features_follow_the_available_columns() -> None:
    kept, missing = default_segment_features(["views", "view_to_cart_rate", "category_entropy"], orders=False)
    assert kept == ["views", "view_to_cart_rate", "category_entropy"]
    assert set(missing) == set(DEFAULT_EVENT_SEGMENT_FEATURES) - set(kept)


def test_method_doc_holds_the_feature_registry() -> None:
    from shopseg.features.events import feature_table_markdown

    text = (Path(__file__).resolve().parents[1] / "docs" / "method.md").read_text(encoding="utf-8")
    block = text.split("<!-- event-features:begin -->")[1].split("<!-- event-features:end -->")[0]
    assert block.strip() == feature_table_markdown()
