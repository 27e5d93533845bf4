"""Customer features, defined in SQL (``features/sql/*.sql``) and registered with a description and unit.

The SQL runs on the backend (DuckDB by default), so only the per-customer table comes back to Python.
Time is explicit: every feature is computed ``as_of`` a timestamp; nothing reads the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources

import pandas as pd

from shopseg.backends.base import Backend
from shopseg.errors import ConfigError

__all__ = ["FEATURES", "Feature", "FeatureSet", "build_features", "default_as_of", "feature_sql"]


@dataclass(frozen=True)
class Feature:
    """One registered feature column."""

    name: str
    description: str
    unit: str
    requires: tuple[str, ...] = ()
    numeric: bool = True


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_BANDS = (
    ("night", "00:00-05:59"),
    ("morning", "06:00-11:59"),
    ("afternoon", "12:00-17:59"),
    ("evening", "18:00-23:59"),
)

FEATURES: tuple[Feature, ...] = (
    Feature("recency_days", "days from the last order's date to the as-of date", "days"),
    Feature("frequency", "number of distinct orders", "orders"),
    Feature("monetary", "total spend (quantity x unit price over clean lines; returns not netted)", "currency"),
    Feature("avg_order_value", "monetary / frequency", "currency per order"),
    Feature("tenure_days", "days from the first order's date to the as-of date", "days"),
    Feature(
        "mean_days_between_orders",
        "mean gap between first and last order per repeat order; for one-order customers the tenure "
        "(a lower bound: they have not re-ordered in that long)",
        "days",
    ),
    Feature("distinct_products", "number of different products bought", "products", ("product_id",)),
    Feature("mean_basket_items", "mean units per order", "units"),
    Feature("mean_basket_lines", "mean lines (products) per order", "lines"),
    Feature("total_items", "units bought in all", "units"),
    Feature("n_lines", "order lines in all", "lines"),
    Feature("mean_unit_price", "spend per unit bought (price level)", "currency per unit"),
    Feature(
        "return_rate",
        "value of cancellations matched to the customer's earlier purchases / monetary, capped at 1",
        "share",
        ("order_id", "product_id"),
    ),
    *(Feature(f"spend_share_{d}", f"share of spend on {d.capitalize()}days", "share") for d in _WEEKDAYS),
    *(Feature(f"spend_share_{b}", f"share of spend in the {b} ({hours}, shop time)", "share") for b, hours in _BANDS),
    Feature("active_months", "distinct calendar months with an order (purchase-month spread)", "months"),
    Feature("first_purchase", "time of the first order", "timestamp", numeric=False),
    Feature("last_purchase", "time of the last order", "timestamp", numeric=False),
)


def feature(name: str) -> Feature:
    for f in FEATURES:
        if f.name == name:
            return f
    raise KeyError(name)


@dataclass
class FeatureSet:
    """The per-customer feature table and what it holds."""

    frame: pd.DataFrame
    as_of: datetime
    numeric: list[str]
    skipped: dict[str, str]
    #: the registered features the frame's columns come from (order features by default; events add theirs)
    catalogue: tuple[Feature, ...] = FEATURES

    def registry(self) -> pd.DataFrame:
        rows = [(f.name, f.description, f.unit) for f in self.catalogue if f.name in self.frame.columns]
        return pd.DataFrame(rows, columns=["feature", "description", "unit"])


def feature_sql(
    as_of: datetime | None,
    source: str = "transactions",
    *,
    customers: str | None = None,
    as_of_table: str | None = None,
) -> str:
    """The feature query for ``as_of`` (DuckDB dialect); ``customers`` names a table whose ``customer_id``
    column limits the query to those customers. ``as_of_table`` (order lines only; ``as_of`` is then unused)
    names a table of ``(customer_id, as_of)``: each customer's features as of their own date in one query
    (customers it does not list are left out)."""
    text = resources.files("shopseg.features").joinpath("sql", f"{source}.sql").read_text(encoding="utf-8")
    where = f"AND customer_id IN (SELECT customer_id FROM {customers})" if customers else ""
    if as_of_table is not None:
        when, join = f"{as_of_table}.as_of", f" JOIN {as_of_table} USING (customer_id)"
    elif as_of is not None:
        when, join = f"TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'", ""
    else:
        raise ConfigError("feature_sql needs an as-of date, or a table of each customer's as-of date")
    return text.replace("{as_of_join}", join).replace("{as_of}", when).replace("{customer_filter}", where)


def default_as_of(backend: Backend, table: str = "transactions") -> datetime:
    """The day after the last timestamp (midnight), the usual 'snapshot date' of RFM analyses."""
    last = backend.scalar(f"SELECT max(ts) FROM {table}")
    if last is None:
        from shopseg.errors import DataError

        raise DataError("no clean transactions are left after cleaning; see the reconciliation for why")
    day = datetime(last.year, last.month, last.day)
    return day + timedelta(days=1)


def build_features(
    backend: Backend,
    as_of: datetime | None = None,
    *,
    present_columns: set[str] | None = None,
    table: str | None = "features",
) -> FeatureSet:
    """Compute every registered feature as of ``as_of``; features whose source column is absent are skipped."""
    as_of = as_of or default_as_of(backend)
    sql = feature_sql(as_of)
    skipped = {
        f.name: f"needs column(s) {', '.join(f.requires)}"
        for f in FEATURES
        if present_columns is not None and not set(f.requires) <= present_columns
    }
    if skipped:
        # the kept columns listed by name (not SELECT * EXCLUDE): the same SQL on every engine
        kept = [c for c in backend.columns_of(f"SELECT * FROM ({sql}) LIMIT 0") if c not in skipped]
        sql = f"SELECT {', '.join(kept)} FROM ({sql})"
    if table:
        backend.execute(f"CREATE OR REPLACE TABLE {table} AS {sql}")
        frame = backend.df(f"SELECT * FROM {table}")
    else:
        frame = backend.df(sql)
    if frame.empty:
        from shopseg.errors import DataError

        raise DataError(f"no customer has a clean purchase before {as_of:%Y-%m-%d}; choose a later --as-of")
    numeric = [f.name for f in FEATURES if f.numeric and f.name in frame.columns]
    frame["customer_id"] = frame["customer_id"].astype(str)
    for c in numeric:
        frame[c] = frame[c].astype("float64")
    return FeatureSet(frame, as_of, numeric, skipped)
