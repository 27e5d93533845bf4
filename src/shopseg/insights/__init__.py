"""Shop insights: the funnel, devices, hours and weekdays, top categories and brands, new vs returning buyers,
and whether buyers later bought what their segment was recommended.

Computed in SQL on the run's backend from the clean ``events`` table when the run has events, else from the
clean order lines (``transactions``: hours, weekdays, categories by revenue, buyers). Times are UTC (or the
shop's time when the source has no zone). Only small tables come back to Python.

Definitions (also in docs/method.md "Shop insights"):

* **funnel**: view → cart → purchase. ``events`` counts events of the stage; ``sessions`` counts sessions with
  at least one event of the stage and ``customers`` the customers with one. ``event_rate`` is the stage's events
  over the previous stage's, ``session_rate`` its sessions over the sessions with a view (session conversion).
* **devices**: events and sessions per device value, and mobile (device matching
  :data:`shopseg.schema.MOBILE_DEVICE_PATTERN`) vs other.
* **hours / weekdays**: per hour of day (0-23) and ISO weekday: events, views, purchases, revenue, sessions
  started, sessions with a purchase and the session conversion (purchase sessions / sessions); the peak hours
  are the top hours by events and by purchases, with their counts.
* **buyers**: a *returning* buyer bought in two or more baskets (order ids, else sessions), a *new* one in
  one; in the last ``holdout_days`` also: *new* = first purchase inside the window, *returning* = bought before.
* **recommendation follow-up**: segments' top products among purchases before the cut-off (as_of minus
  ``holdout_days``; what a per-segment recommendation would have shown) and the share of the customers buying
  after the cut-off who bought at least one product of their segment's list; the shop-wide top list is the
  baseline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shopseg.backends.base import Backend
from shopseg.backends.duckdb import quote
from shopseg.schema import MOBILE_DEVICE_PATTERN

if TYPE_CHECKING:
    from shopseg.config import RunConfig

__all__ = ["WEEKDAYS", "Insights", "compute_insights", "events_summary", "load_insights", "shop_insights"]

WEEKDAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
#: the tables :meth:`Insights.save` writes into the run database, and their attribute names
_TABLES: tuple[str, ...] = (
    "funnel",
    "devices",
    "hours",
    "peak_hours",
    "weekdays",
    "top_categories_by_views",
    "top_categories_by_revenue",
    "top_brands_by_views",
    "top_brands_by_revenue",
    "buyers",
    "coupon_funnel",
    "coupon_hours",
    "coupon_weekdays",
    "coupon_months",
    "coupon_top",
    "coupon_customers",
    "attribute_activity",
)
#: coupon statuses read as burned (redeemed) when the caller does not pass [customers] burned_values
BURNED_VALUES: tuple[str, ...] = ("burned", "redeemed", "used")


@dataclass
class Insights:
    """The shop insights of one run (frames are None where the data cannot tell)."""

    source: str  # "events", "orders" or "coupons" (a customer table with coupon activity and nothing else)
    as_of: datetime
    funnel: pd.DataFrame | None = None
    devices: pd.DataFrame | None = None
    hours: pd.DataFrame | None = None
    peak_hours: pd.DataFrame | None = None
    weekdays: pd.DataFrame | None = None
    top_categories_by_views: pd.DataFrame | None = None
    top_categories_by_revenue: pd.DataFrame | None = None
    top_brands_by_views: pd.DataFrame | None = None
    top_brands_by_revenue: pd.DataFrame | None = None
    buyers: pd.DataFrame | None = None
    # the customer table's coupon activity (issue 3: the coupon workbook) and activity per attribute value
    coupon_funnel: pd.DataFrame | None = None
    coupon_hours: pd.DataFrame | None = None
    coupon_weekdays: pd.DataFrame | None = None
    coupon_months: pd.DataFrame | None = None
    coupon_top: pd.DataFrame | None = None
    coupon_customers: pd.DataFrame | None = None
    attribute_activity: pd.DataFrame | None = None
    rec_followup: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The non-empty frames by name."""
        out = {}
        for name in _TABLES:
            frame = getattr(self, name)
            if frame is not None:
                out[name] = frame
        return out

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary: every table as records, plus the follow-up and the notes."""
        return {
            "source": self.source,
            "as_of": self.as_of.isoformat(),
            **{k: json.loads(v.to_json(orient="records", date_format="iso")) for k, v in self.tables().items()},
            "rec_followup": self.rec_followup,
            "notes": self.notes,
        }

    def save(self, backend: Backend, path: Path | None = None) -> None:
        """Write each table as ``insights_<name>`` into the backend (and the summary as JSON to ``path``)."""
        for name, frame in self.tables().items():
            backend.create_table(f"insights_{name}", frame)
        if path is not None:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(self.summary(), indent=2, default=str, allow_nan=False), encoding="utf-8")
            tmp.replace(path)


def _lit(t: datetime) -> str:
    return f"TIMESTAMP '{t:%Y-%m-%d %H:%M:%S}'"


def _has_rows(backend: Backend, table: str, where: str = "true") -> bool:
    if not backend.has_table(table):
        return False
    return bool(backend.scalar(f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {where} LIMIT 1)"))


def compute_insights(
    backend: Backend,
    *,
    as_of: datetime | None = None,
    holdout_days: int = 30,
    top_n: int = 10,
    segment_top_n: int = 20,
    interactions: bool = False,
    burned_values: Sequence[str] = BURNED_VALUES,
) -> Insights:
    """Shop insights from the run's clean ``events`` (or, without events, its ``transactions``; without
    either, the customer table's coupon activity ``coupons``). A run with a customer table also gets its
    coupon tables (when it has coupon activity) and the activity per attribute value (``attribute_activity``).
    ``interactions``: the run's ``interactions_all`` was built for this ``as_of`` with its training columns
    for the same hold-out (the recommend step's), so the recommendation follow-up reads it instead of the lines.
    ``burned_values``: coupon statuses that mean burned ([customers] burned_values)."""
    has_coupons = _has_rows(backend, "coupons", "ts IS NOT NULL")
    if _has_rows(backend, "events"):
        ins = _from_events(backend, as_of, holdout_days, top_n)
    elif _has_rows(backend, "transactions"):
        ins = _from_orders(backend, as_of, holdout_days, top_n)
    elif has_coupons:
        ins = Insights("coupons", _as_of(backend, "coupons", as_of))
        ins.notes.append(
            "the run has no orders or events: the insights come from the customer table's coupon transactions "
            "(no funnel of views, no devices, no revenue)"
        )
    else:
        from shopseg.errors import DataError

        raise DataError("no clean events, order lines or coupon transactions to compute shop insights from")
    if has_coupons:
        _coupons(backend, ins, holdout_days, top_n, burned_values)
    if backend.has_table("customers_flagged") and backend.has_table("customers"):
        ins.attribute_activity = _attribute_activity(backend, ins.as_of, top_n, burned_values)
    if ins.source == "coupons":
        return ins  # no order lines: nothing to follow recommendations up with
    use = interactions and backend.has_table("interactions_all")
    use = use and "n_orders_train" in {c for c, _ in backend.columns("interactions_all")}
    ins.rec_followup = _rec_followup(backend, ins.as_of, holdout_days, segment_top_n, interactions=use)
    if ins.rec_followup is None:
        ins.notes.append(
            "recommendation follow-up not computed: it needs segments, recommendations and purchases on both sides "
            f"of the cut-off ({holdout_days} days before the as-of date)"
        )
    return ins


def _as_of(backend: Backend, table: str, as_of: datetime | None) -> datetime:
    if as_of is not None:
        return as_of
    last = backend.scalar(f"SELECT max(ts) FROM {table}")
    return datetime(last.year, last.month, last.day) + timedelta(days=1)


# ------------------------------------------------------------------------------------------------ events


def _from_events(backend: Backend, as_of: datetime | None, holdout_days: int, top_n: int) -> Insights:
    as_of = _as_of(backend, "events", as_of)
    ev = f"(SELECT * FROM events WHERE ts < {_lit(as_of)})"
    ins = Insights("events", as_of)
    ins.funnel = _funnel(backend, ev)
    ins.devices = _devices(backend, ev)
    if ins.devices is None:
        ins.notes.append("device share not computed: the events have no device column")
    ins.hours = hours = _by_time(backend, ev, "hour({t})", "hour", list(range(24)))
    ins.weekdays = days = _by_time(backend, ev, "isodow({t})", "weekday", list(range(1, 8)))
    days.insert(1, "day", [WEEKDAYS[d - 1] for d in days["weekday"]])
    ins.peak_hours = _peaks(hours)
    ins.top_categories_by_views = _top(backend, ev, "category", "view", top_n)
    ins.top_categories_by_revenue = _top(backend, ev, "category", "purchase", top_n)
    ins.top_brands_by_views = _top(backend, ev, "brand", "view", top_n)
    ins.top_brands_by_revenue = _top(backend, ev, "brand", "purchase", top_n)
    baskets = (
        f"SELECT customer_id, coalesce(order_id, session_id) AS basket, min(ts) AS ts, "
        f"sum(coalesce(price, 0)) AS revenue FROM {ev} e WHERE event_type = 'purchase' GROUP BY 1, 2"
    )
    ins.buyers = _buyers(backend, baskets, as_of, holdout_days)
    return ins


def _funnel(backend: Backend, ev: str) -> pd.DataFrame:
    stages = ("view", "cart", "purchase")
    per = backend.df(
        "SELECT event_type, sum(n) AS events, count(*) AS sessions, count(DISTINCT customer_id) AS customers FROM ("
        f"  SELECT event_type, customer_id, session_id, count(*) AS n FROM {ev} e "
        "  WHERE event_type IN ('view', 'cart', 'purchase') GROUP BY 1, 2, 3"
        ") GROUP BY 1"
    ).set_index("event_type")
    view_sessions = int(per["sessions"].get("view", 0)) if "view" in per.index else 0
    rows = []
    prev: int | None = None
    for st in stages:
        events = int(per["events"].get(st, 0)) if st in per.index else 0
        sessions = int(per["sessions"].get(st, 0)) if st in per.index else 0
        customers = int(per["customers"].get(st, 0)) if st in per.index else 0
        rows.append(
            {
                "stage": st,
                "events": events,
                "sessions": sessions,
                "customers": customers,
                "event_rate": (events / prev) if prev else (1.0 if st == "view" else np.nan),
                "session_rate": sessions / view_sessions if view_sessions else np.nan,
            }
        )
        prev = events
    return pd.DataFrame(rows)


def _devices(backend: Backend, ev: str) -> pd.DataFrame | None:
    if not _has_rows(backend, "events", "device IS NOT NULL"):
        return None
    frame = backend.df(
        "SELECT device, count(*) AS events, count(DISTINCT customer_id || '|' || session_id) AS sessions, "
        "count(*) FILTER (WHERE event_type = 'purchase') AS purchases, "
        f"regexp_matches(lower(device), '{MOBILE_DEVICE_PATTERN}') AS mobile "
        f"FROM {ev} e WHERE device IS NOT NULL GROUP BY device ORDER BY events DESC, device"
    )
    frame["share_events"] = frame["events"] / frame["events"].sum()
    frame["share_sessions"] = frame["sessions"] / frame["sessions"].sum()
    return frame


def _by_time(backend: Backend, ev: str, expr: str, name: str, keys: list[int]) -> pd.DataFrame:
    per_event = backend.df(
        f"SELECT {expr.format(t='ts')} AS k, count(*) AS events, count(*) FILTER (WHERE event_type = 'view') AS views, "
        "count(*) FILTER (WHERE event_type = 'cart') AS carts, "
        "count(*) FILTER (WHERE event_type = 'purchase') AS purchases, "
        "coalesce(sum(price) FILTER (WHERE event_type = 'purchase'), 0) AS revenue "
        f"FROM {ev} e WHERE event_type IN ('view', 'cart', 'remove_from_cart', 'purchase') GROUP BY 1"
    ).set_index("k")
    # a session belongs to the hour / weekday it started in
    per_session = backend.df(
        f"SELECT {expr.format(t='start')} AS k, count(*) AS sessions, "
        "count(*) FILTER (WHERE bought) AS purchase_sessions FROM ("
        "  SELECT customer_id, session_id, min(ts) AS start, bool_or(event_type = 'purchase') AS bought "
        f"  FROM {ev} e WHERE event_type IN ('view', 'cart', 'remove_from_cart', 'purchase') GROUP BY 1, 2"
        ") GROUP BY 1"
    ).set_index("k")
    frame = pd.DataFrame({name: keys}).set_index(name)
    frame = frame.join(per_event).join(per_session).fillna(0)
    for c in ("events", "views", "carts", "purchases", "sessions", "purchase_sessions"):
        frame[c] = frame[c].astype("int64")
    frame["revenue"] = frame["revenue"].astype("float64")
    frame["conversion"] = np.where(
        frame["sessions"] > 0, frame["purchase_sessions"] / frame["sessions"].where(frame["sessions"] > 0, 1), np.nan
    )
    frame.index.name = name
    return frame.reset_index()


def _peaks(hours: pd.DataFrame, n: int = 3) -> pd.DataFrame:
    """The top ``n`` hours by events and by purchases (ties: the earlier hour), with their counts."""
    rows = []
    for by in ("events", "purchases"):
        top = hours.sort_values([by, "hour"], ascending=[False, True], kind="stable").head(n)
        for rank, r in enumerate(top.itertuples(), start=1):
            if getattr(r, by) > 0:
                rows.append({"by": by, "rank": rank, "hour": int(r.hour), "count": int(getattr(r, by))})
    return pd.DataFrame(rows, columns=["by", "rank", "hour", "count"])


def _top(backend: Backend, ev: str, column: str, event_type: str, n: int) -> pd.DataFrame | None:
    if not _has_rows(backend, "events", f"{column} IS NOT NULL"):
        return None
    if event_type == "view":
        frame = backend.df(
            f"SELECT {column}, count(*) AS views, count(DISTINCT customer_id) AS customers FROM {ev} e "
            f"WHERE event_type = 'view' AND {column} IS NOT NULL GROUP BY 1 ORDER BY views DESC, {column} LIMIT {n}"
        )
        total = backend.scalar(f"SELECT count(*) FROM {ev} e WHERE event_type = 'view' AND {column} IS NOT NULL")
        frame["share"] = frame["views"] / max(int(total or 0), 1)
    else:
        frame = backend.df(
            f"SELECT {column}, coalesce(sum(price), 0) AS revenue, count(*) AS purchases, "
            f"count(DISTINCT customer_id) AS buyers FROM {ev} e "
            f"WHERE event_type = 'purchase' AND {column} IS NOT NULL GROUP BY 1 "
            f"ORDER BY revenue DESC, purchases DESC, {column} LIMIT {n}"
        )
        total = backend.scalar(f"SELECT sum(price) FROM {ev} e WHERE event_type = 'purchase' AND {column} IS NOT NULL")
        frame["share"] = frame["revenue"] / float(total) if total else np.nan
    return frame


def _buyers(backend: Backend, baskets: str, as_of: datetime, holdout_days: int) -> pd.DataFrame:
    """New (one basket) vs returning (2+) buyers overall, and new vs returning among the last window's buyers."""
    start = as_of - timedelta(days=holdout_days)
    overall = backend.df(
        "SELECT CASE WHEN n = 1 THEN 'new (one purchase)' ELSE 'returning (2+ purchases)' END AS kind, "
        "count(*) AS buyers, sum(revenue) AS revenue FROM ("
        f"  SELECT customer_id, count(*) AS n, sum(revenue) AS revenue FROM ({baskets}) GROUP BY 1"
        ") GROUP BY 1 ORDER BY 1"
    )
    overall.insert(0, "period", "all data")
    window = backend.df(
        "SELECT CASE WHEN first_ts >= ? THEN 'new (first purchase in the window)' "
        "ELSE 'returning (bought before)' END AS kind, count(*) AS buyers, sum(revenue) AS revenue FROM ("
        "  SELECT customer_id, min(ts) AS first_ts, sum(revenue) FILTER (WHERE ts >= ?) AS revenue, "
        f"  max(ts) AS last_ts FROM ({baskets}) GROUP BY 1"
        ") WHERE last_ts >= ? GROUP BY 1 ORDER BY 1",
        [start, start, start],
    )
    window.insert(0, "period", f"last {holdout_days} days")
    frame = pd.concat([overall, window], ignore_index=True)
    frame["buyers"] = frame["buyers"].astype("int64")
    frame["revenue"] = frame["revenue"].astype("float64")
    frame["share_buyers"] = frame["buyers"] / frame.groupby("period")["buyers"].transform("sum")
    total = frame.groupby("period")["revenue"].transform("sum")
    frame["share_revenue"] = np.where(total > 0, frame["revenue"] / total.where(total > 0, 1), np.nan)
    return frame


# ------------------------------------------------------------------------------------------------ orders


def _from_orders(backend: Backend, as_of: datetime | None, holdout_days: int, top_n: int) -> Insights:
    """Without events: hours and weekdays of orders, categories by revenue, new vs returning buyers."""
    as_of = _as_of(backend, "transactions", as_of)
    tx = f"(SELECT * FROM transactions WHERE ts < {_lit(as_of)})"
    ins = Insights("orders", as_of)
    ins.notes.append("the run has no events: funnel, devices and views are not available; order lines are used")
    # the orders (first line's time, revenue) once: the hours, weekdays and both buyer tables read them
    backend.execute(
        "CREATE OR REPLACE TEMP TABLE _insight_orders AS SELECT customer_id, order_id, min(ts) AS ts, "
        f"sum(quantity * unit_price) AS revenue FROM {tx} t GROUP BY 1, 2"
    )
    try:
        _orders_tables(backend, ins, tx, as_of, holdout_days, top_n)
    finally:
        backend.execute("DROP TABLE IF EXISTS _insight_orders")
    return ins


def _orders_tables(backend: Backend, ins: Insights, tx: str, as_of: datetime, holdout_days: int, top_n: int) -> None:
    orders = "SELECT * FROM _insight_orders"
    frames = {}
    for expr, name, keys in (("hour(ts)", "hour", list(range(24))), ("isodow(ts)", "weekday", list(range(1, 8)))):
        per = backend.df(
            f"SELECT {expr} AS k, count(*) AS orders, sum(revenue) AS revenue FROM ({orders}) GROUP BY 1"
        ).set_index("k")
        frame = pd.DataFrame({name: keys}).set_index(name).join(per).fillna(0)
        frame["orders"] = frame["orders"].astype("int64")
        frame["revenue"] = frame["revenue"].astype("float64")
        frame.index.name = name
        frames[name] = frame.reset_index()
    ins.hours, ins.weekdays = hours, days = frames["hour"], frames["weekday"]
    days.insert(1, "day", [WEEKDAYS[d - 1] for d in days["weekday"]])
    top = hours.sort_values(["orders", "hour"], ascending=[False, True], kind="stable").head(3)
    ins.peak_hours = pd.DataFrame(
        [
            {"by": "orders", "rank": i, "hour": int(r.hour), "count": int(r.orders)}
            for i, r in enumerate(top.itertuples(), start=1)
            if r.orders > 0
        ],
        columns=["by", "rank", "hour", "count"],
    )
    if _has_rows(backend, "transactions", "category IS NOT NULL"):
        ins.top_categories_by_revenue = backend.df(
            "SELECT category, sum(quantity * unit_price) AS revenue, count(DISTINCT order_id) AS orders, "
            f"count(DISTINCT customer_id) AS buyers FROM {tx} t WHERE category IS NOT NULL GROUP BY 1 "
            f"ORDER BY revenue DESC, category LIMIT {top_n}"
        )
        total = backend.scalar(f"SELECT sum(quantity * unit_price) FROM {tx} t WHERE category IS NOT NULL")
        ins.top_categories_by_revenue["share"] = ins.top_categories_by_revenue["revenue"] / float(total or 1)
    baskets = "SELECT customer_id, order_id AS basket, ts, revenue FROM _insight_orders"
    ins.buyers = _buyers(backend, baskets, as_of, holdout_days)


# ------------------------------------------------------------------------------------------------ coupons


def _status_sql(burned_values: Sequence[str]) -> str:
    """SQL condition: the coupon transaction was burned (its status is a burned value; without a status
    column, it has a burn date)."""
    values = ", ".join("'" + v.lower().replace("'", "''") + "'" for v in burned_values) or "NULL"
    return f"lower(CAST(status AS VARCHAR)) IN ({values})"


def _coupons(backend: Backend, ins: Insights, holdout_days: int, top_n: int, burned_values: Sequence[str]) -> None:
    """The coupon tables: funnel (customers → took a coupon → burned one), hours (only when the times carry a
    time of day), weekdays, months, top merchants/branches, new vs returning coupon users."""
    cols = {c for c, _ in backend.columns("coupons")}
    if "status" in cols:
        burned = _status_sql(burned_values)
    elif "burn_ts" in cols:
        burned = "burn_ts IS NOT NULL"
    else:
        burned = "false"
        ins.notes.append("coupon burn counts not computed: the coupon transactions have no status or burn date")
    cp = f"(SELECT *, {burned} AS is_burned FROM coupons WHERE ts IS NOT NULL AND ts < {_lit(ins.as_of)})"
    n_customers = int(backend.scalar("SELECT count(*) FROM customers") or 0) if backend.has_table("customers") else 0
    row = backend.rows(
        "SELECT count(*), count(DISTINCT customer_id), count(*) FILTER (WHERE is_burned), "
        f"count(DISTINCT customer_id) FILTER (WHERE is_burned) FROM {cp} c"
    )[0]
    tx, takers, n_burned, burners = (int(x or 0) for x in row)
    stages = [
        ("customers in the table", n_customers, tx),
        ("took a coupon", takers, tx),
        ("burned a coupon", burners, n_burned),
    ]
    rows: list[dict[str, Any]] = []
    prev_c: int | None = None
    prev_t: int | None = None
    for stage, customers, transactions in stages:
        rows.append(
            {
                "stage": stage,
                "customers": customers,
                "transactions": transactions,
                "customer_rate": customers / prev_c if prev_c else np.nan,
                "transaction_rate": transactions / prev_t if prev_t else np.nan,
            }
        )
        prev_c, prev_t = customers, transactions
    ins.coupon_funnel = pd.DataFrame(rows)
    if tx == 0:
        ins.notes.append(f"no coupon transaction before the as-of date {ins.as_of:%Y-%m-%d}")
        return
    if "burn_ts" in cols:
        days = backend.scalar(
            f"SELECT median(date_diff('day', ts, burn_ts)) FROM {cp} c WHERE is_burned AND burn_ts >= ts"
        )
        if days is not None:
            ins.notes.append(f"a burned coupon was burned a median {float(days):,.0f} days after it was taken")
    per = (
        "count(*) AS transactions, count(*) FILTER (WHERE is_burned) AS burned, "
        "count(DISTINCT customer_id) AS customers"
    )
    timed = bool(
        backend.scalar(f"SELECT count(*) FROM (SELECT 1 FROM {cp} c WHERE ts <> date_trunc('day', ts) LIMIT 1)")
    )
    if timed:
        ins.coupon_hours = _keyed(backend, f"SELECT hour(ts) AS k, {per} FROM {cp} c GROUP BY 1", "hour", range(24))
    else:
        ins.notes.append("coupon hours not computed: the coupon transactions carry dates without a time of day")
    days_frame = _keyed(backend, f"SELECT isodow(ts) AS k, {per} FROM {cp} c GROUP BY 1", "weekday", range(1, 8))
    if "burn_ts" in cols:
        burns = backend.df(
            f"SELECT isodow(burn_ts) AS k, count(*) AS burns_on_day FROM {cp} c "
            "WHERE is_burned AND burn_ts IS NOT NULL GROUP BY 1"
        ).set_index("k")["burns_on_day"]
        days_frame["burns_on_day"] = days_frame["weekday"].map(burns).fillna(0).astype("int64")
    days_frame.insert(1, "day", [WEEKDAYS[d - 1] for d in days_frame["weekday"]])
    days_frame["burn_rate"] = _rate(days_frame["burned"], days_frame["transactions"])
    ins.coupon_weekdays = days_frame
    months = backend.df(
        f"WITH c AS {cp}, f AS (SELECT customer_id, min(ts) AS first_ts FROM c GROUP BY 1) "
        f"SELECT strftime(date_trunc('month', ts), '%Y-%m') AS month, {per}, "
        "count(DISTINCT customer_id) FILTER (WHERE date_trunc('month', ts) = date_trunc('month', f.first_ts)) "
        "AS first_time FROM c JOIN f USING (customer_id) GROUP BY 1 ORDER BY 1"
    )
    for c in ("transactions", "burned", "customers", "first_time"):
        months[c] = months[c].astype("int64")
    months["burn_rate"] = _rate(months["burned"], months["transactions"])
    ins.coupon_months = months
    tops = []
    for dim in (c for c in ("merchant", "branch", "coupon") if c in cols):
        frame = backend.df(
            f"SELECT '{dim}' AS dimension, CAST({dim} AS VARCHAR) AS value, {per} FROM {cp} c "
            f"WHERE {dim} IS NOT NULL GROUP BY 2 ORDER BY transactions DESC, burned DESC, value LIMIT {int(top_n)}"
        )
        if dim == "coupon" and not frame.empty and int(frame["transactions"].max()) <= 1:
            continue  # every coupon name is used once (codes): no top list to show
        frame["share"] = frame["transactions"] / max(tx, 1)
        frame["burn_rate"] = _rate(frame["burned"], frame["transactions"])
        tops.append(frame)
    if tops:
        ins.coupon_top = pd.concat(tops, ignore_index=True)
    # the window ends with the coupon data (the as-of date may be later: burn dates run past the last transaction)
    end = min(ins.as_of, _as_of(backend, f"{cp}", None))
    start = end - timedelta(days=holdout_days)
    users = backend.df(
        "SELECT 'all data' AS period, CASE WHEN n = 1 THEN 'one coupon transaction' "
        "ELSE 'returning (2+ coupon transactions)' END AS kind, count(*) AS customers, sum(n) AS transactions "
        f"FROM (SELECT customer_id, count(*) AS n FROM {cp} c GROUP BY 1) GROUP BY 2 "
        f"UNION ALL SELECT 'last {int(holdout_days)} days to {end:%Y-%m-%d}' AS period, CASE WHEN first_ts >= ? "
        "THEN 'new (first coupon in the window)' ELSE 'returning (took one before)' END AS kind, count(*), "
        "sum(n_window) FROM (SELECT customer_id, min(ts) AS first_ts, max(ts) AS last_ts, "
        f"count(*) FILTER (WHERE ts >= ?) AS n_window FROM {cp} c GROUP BY 1) WHERE last_ts >= ? GROUP BY 2 "
        "ORDER BY 1, 2",
        [start, start, start],
    )
    users["customers"] = users["customers"].astype("int64")
    users["transactions"] = users["transactions"].astype("int64")
    users["share_customers"] = users["customers"] / users.groupby("period")["customers"].transform("sum")
    ins.coupon_customers = users


def _rate(num: pd.Series, den: pd.Series) -> pd.Series:
    return (num / den.where(den > 0)).astype("float64")


def _keyed(backend: Backend, sql: str, name: str, keys: range) -> pd.DataFrame:
    """``sql``'s rows (key ``k``) on every key of ``keys`` (absent keys: zeros)."""
    per = backend.df(sql).set_index("k")
    frame = pd.DataFrame({name: list(keys)}).set_index(name).join(per).fillna(0)
    for c in frame.columns:
        frame[c] = frame[c].astype("int64")
    frame.index.name = name
    return frame.reset_index()


def _attribute_activity(
    backend: Backend, as_of: datetime, top_n: int, burned_values: Sequence[str]
) -> pd.DataFrame | None:
    """Per categorical attribute of the customer table (city, gender …) and value (its ``top_n`` most active
    values): customers, and their activity in each source the run has: coupon transactions and burns, orders
    and revenue (clean order lines), events and purchases. Sorted by the first source's activity."""
    attrs = [c for c, t in backend.columns("customers") if c != "customer_id" and str(t).upper() == "VARCHAR"]
    if not attrs:
        return None
    a = _lit(as_of)
    joins: list[str] = []
    sel: list[str] = []
    order = "customers"
    if _has_rows(backend, "events"):
        joins.append(
            "LEFT JOIN (SELECT customer_id, count(*) AS events, count(*) FILTER (WHERE event_type = 'purchase') "
            f"AS purchases FROM events WHERE ts < {a} GROUP BY 1) ev USING (customer_id)"
        )
        sel.append(
            "count(ev.customer_id) AS with_events, coalesce(sum(ev.events), 0) AS events, "
            "coalesce(sum(ev.purchases), 0) AS purchases"
        )
        order = "events"
    if _has_rows(backend, "transactions"):
        joins.append(
            "LEFT JOIN (SELECT customer_id, count(DISTINCT order_id) AS orders, sum(quantity * unit_price) AS revenue "
            f"FROM transactions WHERE ts < {a} GROUP BY 1) od USING (customer_id)"
        )
        sel.append(
            "count(od.customer_id) AS buyers, coalesce(sum(od.orders), 0) AS orders, "
            "coalesce(sum(od.revenue), 0) AS revenue"
        )
        order = "revenue"
    if _has_rows(backend, "coupons", "ts IS NOT NULL"):
        cols = {c for c, _ in backend.columns("coupons")}
        burned = (
            _status_sql(burned_values)
            if "status" in cols
            else ("burn_ts IS NOT NULL" if "burn_ts" in cols else "false")
        )
        joins.append(
            f"LEFT JOIN (SELECT customer_id, count(*) AS tx, count(*) FILTER (WHERE {burned}) AS burned FROM coupons "
            f"WHERE ts IS NOT NULL AND ts < {a} GROUP BY 1) cp USING (customer_id)"
        )
        sel.append(
            "count(cp.customer_id) AS coupon_users, coalesce(sum(cp.tx), 0) AS coupon_transactions, "
            "coalesce(sum(cp.burned), 0) AS coupons_burned"
        )
        order = "coupon_transactions"
    frames = []
    total = int(backend.scalar("SELECT count(*) FROM customers") or 0)
    for attr in attrs:
        q, lit = quote(attr), attr.replace("'", "''")
        frame = backend.df(
            f"SELECT '{lit}' AS attribute, coalesce(c.{q}, '(empty)') AS value, count(*) AS customers"
            + "".join(", " + x for x in sel)
            + f" FROM customers c {' '.join(joins)} GROUP BY 2 ORDER BY {order} DESC, customers DESC, value "
            f"LIMIT {int(top_n)}"
        )
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out["share_customers"] = out["customers"] / max(total, 1)
    for c in out.columns:
        if c not in ("attribute", "value", "share_customers", "revenue"):
            out[c] = out[c].astype("int64")
    if "coupon_transactions" in out:
        out["coupons_per_customer"] = out["coupon_transactions"] / out["customers"]
        out["burn_rate"] = _rate(out["coupons_burned"], out["coupon_transactions"])
    if "revenue" in out:
        out["revenue"] = out["revenue"].astype("float64")
        out["revenue_per_customer"] = out["revenue"] / out["customers"]
    if "events" in out:
        out["events_per_customer"] = out["events"] / out["customers"]
    return out


# ------------------------------------------------------------------------------------------------ follow-up


def _rec_followup(
    backend: Backend, as_of: datetime, holdout_days: int, n: int, *, interactions: bool = False
) -> dict[str, Any] | None:
    """Share of the customers buying after the cut-off who bought a product of their segment's top list (made
    from purchases before the cut-off), against the same share for the shop-wide top list. With
    ``interactions`` the (customer, product) pairs come from ``interactions_all`` (one row a pair, orders before
    the cut-off counted apart), where an order counts at the time of its first line, as in the recommendation
    evaluation; otherwise from the clean lines."""
    if not (backend.has_table("segments") and backend.has_table("recommendations")):
        return None
    if not _has_rows(backend, "transactions", "product_id IS NOT NULL"):
        return None
    cutoff = as_of - timedelta(days=holdout_days)
    c, a = _lit(cutoff), _lit(as_of)
    counted = interactions and backend.has_table("segment_items")
    counted = counted and "buyers_train" in {col for col, _ in backend.columns("segment_items")}
    if interactions:
        pairs = (
            "p AS (SELECT i.customer_id, i.product_id, s.segment, coalesce(i.n_orders_train, 0) > 0 AS is_before, "
            "  i.n_orders > coalesce(i.n_orders_train, 0) AS is_after "
            "  FROM interactions_all i JOIN segments s ON s.customer_id = i.customer_id), "
            "before AS (SELECT customer_id, product_id, segment FROM p WHERE is_before), "
            "after AS (SELECT customer_id, product_id, segment FROM p WHERE is_after),"
        )
    else:
        pairs = f"""p AS (
            SELECT t.customer_id, t.product_id, t.ts, s.segment
            FROM transactions t JOIN segments s ON s.customer_id = t.customer_id
            WHERE t.product_id IS NOT NULL AND t.ts < {a}
        ),
        before AS (SELECT DISTINCT customer_id, product_id, segment FROM p WHERE ts < {c}),
        after AS (SELECT DISTINCT customer_id, product_id, segment FROM p WHERE ts >= {c}),"""
    row = (
        _followup_counts_from_items(backend, n)
        if counted
        else backend.rows(
            f"""
        WITH {pairs}
        seg_top AS (
            SELECT segment, product_id FROM (
                SELECT segment, product_id, row_number() OVER (PARTITION BY segment ORDER BY count(*) DESC, product_id)
                    AS rk
                FROM before GROUP BY segment, product_id
            ) WHERE rk <= {int(n)}
        ),
        shop_top AS (
            SELECT product_id FROM before GROUP BY product_id ORDER BY count(*) DESC, product_id LIMIT {int(n)}
        ),
        buyers AS (SELECT DISTINCT customer_id, segment FROM after),
        hit_seg AS (
            SELECT DISTINCT a.customer_id FROM after a
            JOIN seg_top t ON t.segment = a.segment AND t.product_id = a.product_id
        ),
        hit_shop AS (SELECT DISTINCT a.customer_id FROM after a JOIN shop_top t ON t.product_id = a.product_id)
        SELECT (SELECT count(*) FROM buyers), (SELECT count(*) FROM hit_seg), (SELECT count(*) FROM hit_shop),
               (SELECT count(*) FROM before)
        """
        )[0]
    )
    buyers, hit_seg, hit_shop, before = (int(x or 0) for x in row)
    if buyers == 0 or before == 0:
        return None
    return {
        "cutoff": cutoff.isoformat(),
        "list_length": int(n),
        "buyers_after_cutoff": buyers,
        "bought_segment_product": hit_seg,
        "share": hit_seg / buyers,
        "baseline_shop_top_share": hit_shop / buyers,
    }


def _followup_counts_from_items(backend: Backend, n: int) -> tuple[Any, ...]:
    """:func:`_rec_followup`'s four counts from the recommend step's ``segment_items``, whose ``buyers_train``
    already counts the (customer, product) pairs before the cut-off per segment and product: only the pairs
    after the cut-off (a few weeks' worth) are read again. The same figures as the query over every pair."""
    return backend.rows(
        f"""
        WITH seg_top AS (
            SELECT segment, product_id FROM (
                SELECT segment, product_id,
                    row_number() OVER (PARTITION BY segment ORDER BY buyers_train DESC, product_id) AS rk
                FROM segment_items WHERE buyers_train > 0
            ) WHERE rk <= {int(n)}
        ),
        shop_top AS (
            SELECT product_id FROM segment_items WHERE buyers_train > 0 GROUP BY product_id
            ORDER BY sum(buyers_train) DESC, product_id LIMIT {int(n)}
        ),
        after AS MATERIALIZED (
            SELECT i.customer_id, i.product_id, s.segment FROM interactions_all i
            JOIN segments s ON s.customer_id = i.customer_id WHERE i.n_orders > coalesce(i.n_orders_train, 0)
        ),
        buyers AS (SELECT DISTINCT customer_id, segment FROM after),
        hit_seg AS (
            SELECT DISTINCT a.customer_id FROM after a
            JOIN seg_top t ON t.segment = a.segment AND t.product_id = a.product_id
        ),
        hit_shop AS (SELECT DISTINCT a.customer_id FROM after a JOIN shop_top t ON t.product_id = a.product_id)
        SELECT (SELECT count(*) FROM buyers), (SELECT count(*) FROM hit_seg), (SELECT count(*) FROM hit_shop),
               (SELECT sum(buyers_train) FROM segment_items)
        """
    )[0]


# ------------------------------------------------------------------------------------------------ summaries


def events_summary(backend: Backend) -> dict[str, Any]:
    """Counts for the report's data section of a run with events: rows, customers, sessions, time range."""
    row = backend.rows(
        "SELECT count(*), count(DISTINCT customer_id), min(ts), max(ts), "
        "count(*) FILTER (WHERE event_type = 'purchase'), "
        "coalesce(sum(price) FILTER (WHERE event_type = 'purchase'), 0) FROM events"
    )[0]
    sessions = backend.scalar("SELECT count(*) FROM (SELECT DISTINCT customer_id, session_id FROM events)")
    raw = backend.rows("SELECT count(*), min(ts), max(ts) FROM events_flagged")[0]
    return {
        "events": int(row[0]),
        "customers": int(row[1]),
        "clean_min": row[2],
        "clean_max": row[3],
        "purchases": int(row[4]),
        "revenue": float(row[5]),
        "sessions": int(sessions or 0),
        "rows": int(raw[0]),
        "date_min": raw[1],
        "date_max": raw[2],
    }


def load_insights(run_dir: str | Path) -> dict[str, Any]:
    """The insights summary a run wrote (``insights.json``)."""
    path = Path(run_dir) / "insights.json"
    if not path.is_file():
        from shopseg.errors import NotFoundError

        raise NotFoundError(f"'{path}' not found; run `shopseg insights {run_dir}` or a newer `shopseg run` first")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def shop_insights(
    inputs: Sequence[str | Path],
    out: str | Path | None = None,
    config: RunConfig | None = None,
    *,
    events: Sequence[str | Path] = (),
) -> Insights:
    """Insights of a finished run folder (``inputs`` = that folder), or of input files, which are read, mapped
    and cleaned (orders, events and/or a customer table such as the coupon workbook, told apart by their
    columns) into ``out`` first. Writes
    ``insights.json`` into the run folder or ``out``."""
    from shopseg.backends.duckdb import DuckDBBackend
    from shopseg.config import RunConfig
    from shopseg.errors import InputError

    config = config or RunConfig()
    items = [Path(i) for i in inputs]
    if len(items) == 1 and not events and (items[0] / "shopseg.duckdb").is_file():
        run_dir = items[0]
        as_of = None
        manifest = run_dir / "manifest.json"
        if manifest.is_file():
            as_of = datetime.fromisoformat(json.loads(manifest.read_text(encoding="utf-8"))["as_of"])
        backend = DuckDBBackend(run_dir / "shopseg.duckdb", memory_limit=config.engine.memory_limit)
        try:
            ins = compute_insights(
                backend,
                as_of=as_of,
                holdout_days=config.recommend.holdout_days,
                burned_values=config.customers.burned_values,
            )
            ins.save(backend, run_dir / "insights.json")
        finally:
            backend.close()
        return ins
    if out is None:
        raise InputError("give --out DIR: where the input files are read and cleaned for the insights")
    from shopseg.clean import clean_transactions
    from shopseg.clean.events import clean_events, combine_quarantine
    from shopseg.ingest import ingest_transactions
    from shopseg.ingest.events import ingest_events, split_inputs

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "shopseg.duckdb", out / "shopseg.duckdb.wal"):
        stale.unlink(missing_ok=True)
    roles = split_inputs([str(i) for i in items], config.input)
    event_files = [*roles["events"], *(str(e) for e in events)]
    if not roles["orders"] and not event_files and not roles["customers"]:
        raise InputError("no order lines, events or customer table among the inputs; insights need one of them")
    backend = DuckDBBackend(
        out / "shopseg.duckdb", memory_limit=config.engine.memory_limit, threads=config.engine.threads
    )
    work = out / ".work"
    try:
        if roles["orders"]:
            ing = ingest_transactions(backend, roles["orders"], config.input, work=work)
            clean_transactions(backend, ing, config.clean)
        if event_files:
            eing = ingest_events(backend, event_files, config.events, work=work)
            clean_events(backend, eing, config.events)
        combine_quarantine(backend, orders=bool(roles["orders"]), events=bool(event_files))
        if roles["customers"]:  # attributes (activity per value) and coupon activity
            from shopseg.clean.customers import clean_customers
            from shopseg.ingest.customers import ingest_customers

            cing = ingest_customers(backend, roles["customers"], config.customers, work=work)
            clean_customers(backend, cing, config.customers)
        ins = compute_insights(
            backend,
            as_of=config.features.as_of,
            holdout_days=config.recommend.holdout_days,
            burned_values=config.customers.burned_values,
        )
        ins.save(backend, out / "insights.json")
    finally:
        backend.close()
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(out / ".tmp", ignore_errors=True)
    return ins
