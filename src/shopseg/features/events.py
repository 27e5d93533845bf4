"""Behavioural features from events (``features/sql/events.sql``), registered with a description and unit,
and the join of order and event features when a run has both.

Every numeric event feature is filled in the SQL itself (see the header of ``events.sql``). When orders and
events are both given, the two tables are joined on ``customer_id`` (full outer join) and the side a customer
lacks is filled as :data:`ORDER_FILLS` / :data:`EVENT_FILLS` say: counts, amounts, shares and rates 0, price
indices 1, day counts the length of that source's observation window (first timestamp in the data to as_of:
"not seen in the whole window"); timestamps and the top category stay empty.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from importlib import resources

import numpy as np
import pandas as pd

from shopseg.backends.base import Backend
from shopseg.errors import DataError, IntegrityError
from shopseg.features import FEATURES, Feature, FeatureSet
from shopseg.schema import MOBILE_DEVICE_PATTERN

__all__ = [
    "DEFAULT_COMBINED_SEGMENT_FEATURES",
    "DEFAULT_EVENT_SEGMENT_FEATURES",
    "EVENT_FEATURES",
    "EVENT_FILLS",
    "ORDER_FILLS",
    "build_event_features",
    "combine_features",
    "default_events_as_of",
    "event_feature_sql",
]

_SHOPPING = "view, cart, remove_from_cart or purchase"

#: Every behavioural feature, in the column order of ``events.sql``.
EVENT_FEATURES: tuple[Feature, ...] = (
    Feature("n_events", f"shopping events ({_SHOPPING}) in all", "events"),
    Feature("views", "product views", "events"),
    Feature("carts", "add-to-cart events", "events"),
    Feature("cart_removals", "remove-from-cart events", "events"),
    Feature("purchases", "purchase events (items bought)", "events"),
    Feature("sessions", "sessions (the source's session id, or 30 minutes of inactivity)", "sessions"),
    Feature("active_days", "distinct days (UTC) on which a session started", "days"),
    Feature("events_per_session", "mean shopping events per session", "events per session"),
    Feature("session_duration_mean", "mean session duration (first to last event)", "minutes"),
    Feature("session_duration_max", "longest session", "minutes"),
    Feature("session_duration_total", "time spent in all sessions", "minutes"),
    Feature("view_to_cart_rate", "carts / views, capped at 1 (0 without views)", "share"),
    Feature(
        "cart_to_purchase_rate",
        "purchases / carts, capped at 1 (1 when bought without carting, 0 without either)",
        "share",
    ),
    Feature("view_to_purchase_rate", "purchases / views, capped at 1 (1 when bought without views)", "share"),
    Feature(
        "cart_abandonment_rate",
        "share of sessions with a cart event that end without a purchase (0: no carts)",
        "share",
    ),
    Feature("distinct_categories_viewed", "different categories viewed", "categories", ("category",)),
    Feature("distinct_categories_bought", "different categories bought", "categories", ("category",)),
    Feature("distinct_brands_viewed", "different brands viewed", "brands", ("brand",)),
    Feature("distinct_brands_bought", "different brands bought", "brands", ("brand",)),
    Feature(
        "category_entropy",
        "explorer score: Shannon entropy of the categories of the customer's events, -sum p log2 p (0 = one category)",
        "bits",
        ("category",),
    ),
    Feature(
        "top_brand_share",
        "brand loyalty: share of the customer's branded events on their top brand",
        "share",
        ("brand",),
    ),
    Feature(
        "premium_index_viewed",
        "geometric mean of price / category median product price over viewed items (1 = typical; 1 without "
        "priced views)",
        "ratio",
        ("price",),
    ),
    Feature(
        "premium_index_bought",
        "geometric mean of price / category median product price over bought items (1 without priced purchases)",
        "ratio",
        ("price",),
    ),
    Feature("mean_viewed_price", "mean price of the viewed items", "currency", ("price",)),
    Feature("spend", "sum of the prices of purchase events", "currency", ("price",)),
    Feature("purchase_count", "purchases as baskets (distinct order ids, else sessions with a purchase)", "orders"),
    Feature("avg_purchase_value", "spend / purchase_count (0 without purchases)", "currency per order", ("price",)),
    Feature("days_since_last_event", "time from the last event to the as-of time", "days"),
    Feature(
        "days_since_last_purchase",
        "time from the last purchase to the as-of time (never bought: the observation window's length)",
        "days",
    ),
    Feature("days_since_first_event", "time from the first event to the as-of time", "days"),
    Feature("night_share", "share of events at night (00:00-05:59 UTC)", "share"),
    Feature("morning_share", "share of events in the morning (06:00-11:59 UTC)", "share"),
    Feature("afternoon_share", "share of events in the afternoon (12:00-17:59 UTC)", "share"),
    Feature("evening_share", "share of events in the evening (18:00-23:59 UTC)", "share"),
    Feature("weekend_share", "share of events on Saturdays and Sundays", "share"),
    Feature(
        "mobile_share",
        f"share of events with a known device that came from a mobile device (device matching "
        f"'{MOBILE_DEVICE_PATTERN}')",
        "share",
        ("device",),
    ),
    Feature("top_category", "the category of most of the customer's events", "category", ("category",), numeric=False),
    Feature("first_event", "time of the first event", "timestamp", numeric=False),
    Feature("last_event", "time of the last event", "timestamp", numeric=False),
)

#: Behavioural segmentation features of an events-only run (when ``segment.features`` is not set): how much
#: customers browse (views), whether browsing turns into carts and purchases (view→cart and view→purchase
#: conversion), how widely they look (category entropy), at which price level (premium index of viewed items)
#: and how loyal to one brand (top brand share). Counts of sessions and events per session add little beside
#: views, and cart abandonment is 0 or 1 for most customers (few have more than one session with a cart), so
#: they are left to ``segment.features``. Features whose source column is missing are left out.
DEFAULT_EVENT_SEGMENT_FEATURES: tuple[str, ...] = (
    "views",
    "view_to_cart_rate",
    "view_to_purchase_rate",
    "category_entropy",
    "premium_index_viewed",
    "top_brand_share",
)

#: Segmentation features of a run with orders and events (when ``segment.features`` is not set): the order
#: default (recency, frequency, order value, tenure) plus browsing volume, conversion, breadth and price level.
DEFAULT_COMBINED_SEGMENT_FEATURES: tuple[str, ...] = (
    "recency_days",
    "frequency",
    "avg_order_value",
    "tenure_days",
    "views",
    "view_to_purchase_rate",
    "category_entropy",
    "premium_index_viewed",
)

_WINDOW = "window"
#: Fill of order features for customers with events but no orders ('window' = observation window in days).
ORDER_FILLS: dict[str, float | str] = {
    "recency_days": _WINDOW,
    "tenure_days": _WINDOW,
    "mean_days_between_orders": _WINDOW,
}
#: Fill of event features for customers with orders but no events (unlisted numeric features: 0).
EVENT_FILLS: dict[str, float | str] = {
    "premium_index_viewed": 1.0,
    "premium_index_bought": 1.0,
    "days_since_last_event": _WINDOW,
    "days_since_last_purchase": _WINDOW,
    "days_since_first_event": _WINDOW,
}


def event_feature_sql(as_of: datetime, *, customers: str | None = None) -> str:
    """The event feature query for ``as_of`` (DuckDB dialect); ``customers`` names a table whose
    ``customer_id`` column limits the query to those customers."""
    text = resources.files("shopseg.features").joinpath("sql", "events.sql").read_text(encoding="utf-8")
    where = f"AND customer_id IN (SELECT customer_id FROM {customers})" if customers else ""
    return (
        text.replace("{as_of}", f"TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'")
        .replace("{customer_filter}", where)
        .replace("{mobile_pattern}", MOBILE_DEVICE_PATTERN)
    )


def default_events_as_of(backend: Backend, table: str = "events") -> datetime:
    """The day after the last event (midnight), like the order-line default."""
    last = backend.scalar(f"SELECT max(ts) FROM {table}")
    if last is None:
        raise DataError("no clean events are left after cleaning; see the events reconciliation for why")
    return datetime(last.year, last.month, last.day) + timedelta(days=1)


def _skipped(present_columns: set[str] | None) -> dict[str, str]:
    if present_columns is None:
        return {}
    return {
        f.name: f"needs event column(s) {', '.join(f.requires)}"
        for f in EVENT_FEATURES
        if not set(f.requires) <= present_columns
    }


def _typed(frame: pd.DataFrame, numeric: list[str]) -> pd.DataFrame:
    frame["customer_id"] = frame["customer_id"].astype(str)
    for c in numeric:
        frame[c] = frame[c].astype("float64")
    return frame


def event_feature_frame(
    backend: Backend,
    as_of: datetime,
    *,
    present_columns: set[str] | None = None,
    customers: str | None = None,
    table: str | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The per-customer event feature frame (and the features skipped for missing columns)."""
    sql = event_feature_sql(as_of, customers=customers)
    skipped = _skipped(present_columns)
    if skipped:
        # the kept columns listed by name (not SELECT * EXCLUDE): the same SQL on every engine
        kept = [c for c in backend.columns_of(f"SELECT * FROM ({sql}) LIMIT 0") if c not in skipped]
        sql = f"SELECT {', '.join(kept)} FROM ({sql})"
    if table:
        backend.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")
        frame = backend.df(f"SELECT * FROM {table}")
    else:
        frame = backend.df(sql)
    numeric = [f.name for f in EVENT_FEATURES if f.numeric and f.name in frame.columns]
    return _typed(frame, numeric), skipped


def build_event_features(
    backend: Backend,
    as_of: datetime | None = None,
    *,
    present_columns: set[str] | None = None,
    table: str | None = "features",
) -> FeatureSet:
    """Compute every registered event feature as of ``as_of`` (default: the day after the last event)."""
    as_of = as_of or default_events_as_of(backend)
    frame, skipped = event_feature_frame(backend, as_of, present_columns=present_columns, table=table)
    if frame.empty:
        raise DataError(f"no customer has a clean shopping event before {as_of:%Y-%m-%d}; choose a later --as-of")
    numeric = [f.name for f in EVENT_FEATURES if f.numeric and f.name in frame.columns]
    return FeatureSet(frame, as_of, numeric, skipped, catalogue=EVENT_FEATURES)


def _window_days(backend: Backend, table: str, as_of: datetime) -> float:
    first = backend.scalar(f"SELECT min(ts) FROM {table} WHERE ts < TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'")
    if first is None:
        return 0.0
    return float((as_of - first).total_seconds()) / 86400.0


def _window_days_whole(backend: Backend, table: str, as_of: datetime) -> float:
    """The order features count whole days (date_diff on dates); so does their window."""
    first = backend.scalar(f"SELECT min(ts) FROM {table} WHERE ts < TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'")
    if first is None:
        return 0.0
    return float((as_of.date() - first.date()).days)


def _fill(frame: pd.DataFrame, columns: list[str], fills: dict[str, float | str], window: float) -> None:
    for c in columns:
        rule = fills.get(c, 0.0)
        value = window if rule == _WINDOW else float(rule)
        frame[c] = frame[c].astype("float64").fillna(value)


def combine_features(
    backend: Backend,
    orders: FeatureSet,
    events: FeatureSet,
    *,
    table: str | None = "features",
) -> FeatureSet:
    """Join order and event features on ``customer_id`` (full outer join) and fill the side a customer lacks.

    Both sets must share ``as_of``. ``has_orders``/``has_events`` (0/1) say which sources a customer has.
    """
    as_of = orders.as_of
    o, e = orders.frame, events.frame
    clash = (set(o.columns) & set(e.columns)) - {"customer_id"}
    if clash:
        raise IntegrityError(f"order and event features share the names {sorted(clash)}")
    frame = o.merge(e, on="customer_id", how="outer", indicator=True, sort=True)
    has_o = frame["_merge"].isin(["both", "left_only"]).to_numpy()
    has_e = frame["_merge"].isin(["both", "right_only"]).to_numpy()
    frame = frame.drop(columns="_merge")
    _fill(frame, orders.numeric, ORDER_FILLS, _window_days_whole(backend, "transactions", as_of))
    _fill(frame, events.numeric, EVENT_FILLS, _window_days(backend, "events", as_of))
    frame["has_orders"] = has_o.astype(np.float64)
    frame["has_events"] = has_e.astype(np.float64)
    frame = frame.reset_index(drop=True)
    if table:
        backend.create_table(table, frame)
    catalogue = (
        *orders.catalogue,
        *events.catalogue,
        Feature("has_orders", "1 when the customer has clean order lines, else 0", "flag"),
        Feature("has_events", "1 when the customer has clean shopping events, else 0", "flag"),
    )
    numeric = [*orders.numeric, *events.numeric]
    return FeatureSet(frame, as_of, numeric, {**orders.skipped, **events.skipped}, catalogue=catalogue)


def features_registry() -> tuple[Feature, ...]:
    """Order and event features together (for documentation)."""
    return (*FEATURES, *EVENT_FEATURES)


def run_as_of(backend: Backend, *, orders: bool, events: bool) -> datetime:
    """The default as-of time of a run: the day after the last clean order line or event, whichever is later."""
    from shopseg.features import default_as_of

    times = []
    if orders:
        times.append(default_as_of(backend))
    if events:
        times.append(default_events_as_of(backend))
    if not times:
        raise DataError("the run has neither order lines nor events to compute features from")
    return max(times)


def build_run_features(
    backend: Backend,
    as_of: datetime | None,
    *,
    order_columns: set[str] | None,
    event_columns: set[str] | None,
) -> FeatureSet:
    """The run's feature table ``features``: order features, event features, or both joined.

    ``order_columns``/``event_columns`` are the mapped canonical columns of each source (None: no such source).
    """
    from shopseg.features import build_features

    orders, events = order_columns is not None, event_columns is not None
    as_of = as_of or run_as_of(backend, orders=orders, events=events)
    if orders and not events:
        return build_features(backend, as_of, present_columns=order_columns)
    if events and not orders:
        return build_event_features(backend, as_of, present_columns=event_columns)
    fo = build_features(backend, as_of, present_columns=order_columns, table="order_features")
    fe = build_event_features(backend, as_of, present_columns=event_columns, table="event_features")
    return combine_features(backend, fo, fe)


def features_as_of(
    backend: Backend,
    as_of: datetime,
    *,
    order_columns: set[str] | None,
    event_columns: set[str] | None,
    customers: str | None = None,
) -> pd.DataFrame:
    """The feature frame as of an earlier time (e.g. the recommendation cut-off), limited to the customers in
    the table ``customers``, with the same columns and fills as :func:`build_run_features` (no table written)."""
    from shopseg.features import feature_sql

    orders, events = order_columns is not None, event_columns is not None
    if orders and not events:
        return backend.df(feature_sql(as_of, customers=customers))
    fe_frame, _ = event_feature_frame(backend, as_of, present_columns=event_columns, customers=customers)
    if not orders:
        return fe_frame
    fo_frame = backend.df(feature_sql(as_of, customers=customers))
    fo_frame["customer_id"] = fo_frame["customer_id"].astype(str)
    o_num = [f.name for f in FEATURES if f.numeric and f.name in fo_frame.columns]
    e_num = [f.name for f in EVENT_FEATURES if f.numeric and f.name in fe_frame.columns]
    fo = FeatureSet(fo_frame, as_of, o_num, {})
    fe = FeatureSet(fe_frame, as_of, e_num, {}, catalogue=EVENT_FEATURES)
    return combine_features(backend, fo, fe, table=None).frame


def default_segment_features(available: list[str], *, orders: bool) -> tuple[list[str], list[str]]:
    """The default segmentation features of a run with events (:data:`DEFAULT_EVENT_SEGMENT_FEATURES`, or
    :data:`DEFAULT_COMBINED_SEGMENT_FEATURES` with orders), limited to ``available``; also the ones left out."""
    wanted = DEFAULT_COMBINED_SEGMENT_FEATURES if orders else DEFAULT_EVENT_SEGMENT_FEATURES
    return [f for f in wanted if f in available], [f for f in wanted if f not in available]


def feature_table_markdown(features: tuple[Feature, ...] = EVENT_FEATURES) -> str:
    """The registry as a Markdown table (docs/method.md holds it; a test keeps the two equal)."""
    lines = ["| feature | unit | needs | description |", "|---|---|---|---|"]
    for f in features:
        needs = ", ".join(f.requires) or "—"
        lines.append(f"| `{f.name}` | {f.unit} | {needs} | {f.description.replace('|', '/')} |")
    return "\n".join(lines)
