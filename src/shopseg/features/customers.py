"""Features from the customer table: its attributes and, when the workbook has one, its coupon activity.

One row per clean customer of the ``customers`` table (SQL on the backend, like every feature):

* numeric attributes as they are; each date attribute becomes ``days_since_<name>`` (``join_date`` →
  ``days_since_join``); categorical attributes stay text (the segmentation encodes them, see
  :mod:`shopseg.segment.mixed`);
* coupon features from ``coupons`` (:data:`COUPON_FEATURES`), counted before the as-of time. Customers without
  any coupon transaction have zero counts.

Every column is registered with a description and a unit (:attr:`CustomerFeatures.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopseg.backends.duckdb import DuckDBBackend, quote
from shopseg.clean.customers import CustomersClean, clean_customers
from shopseg.config import CustomersConfig
from shopseg.errors import ConfigError, DataError
from shopseg.features import Feature, FeatureSet
from shopseg.ingest.customers import CustomersIngest, ingest_customers
from shopseg.profile.composition import segment_composition
from shopseg.schema import normalize_name
from shopseg.segment.mixed import AttributeDominance, CategoricalEncoder, attribute_dominance, dominance_warning

__all__ = [
    "COUPON_FEATURES",
    "CustomerFeatures",
    "CustomerRun",
    "as_feature_set",
    "attach_customer_features",
    "build_customer_features",
    "check_segments",
    "customers_as_of",
    "encode_categoricals",
    "extend_quarantine",
    "join_run_features",
    "load_customer_table",
    "with_customer_columns",
]

#: Days in an average month (365.25 / 12), for per-month rates.
MONTH_DAYS = 30.4375
#: Date attributes whose name contains one of these mark when the customer joined (tried in this order).
_JOIN_HINTS = ("join", "signup", "register", "registration", "created", "membersince", "since", "start", "first")

COUPON_FEATURES: tuple[Feature, ...] = (
    Feature("coupon_transactions", "coupon transactions (subscribed or burned) before the as-of date", "coupons"),
    Feature("coupon_burned", "coupons burned (redeemed) before the as-of date", "coupons", ("status",)),
    Feature("coupon_subscribed", "coupons subscribed (taken) but not burned", "coupons", ("status",)),
    Feature(
        "coupon_burn_rate",
        "burned / coupon transactions (empty without any transaction; the segmentation fills the median)",
        "share",
        ("status",),
    ),
    Feature(
        "coupon_per_month",
        "coupon usage frequency: coupon transactions per month (30.44 days) from joining (else the first coupon) "
        "to the as-of date",
        "coupons per month",
    ),
    Feature(
        "days_since_last_coupon",
        "days from the last coupon transaction (none: from joining) to the as-of date",
        "days",
    ),
    Feature("days_to_burn", "mean days from taking a coupon to burning it (burned coupons only)", "days", ("burn_ts",)),
)


@dataclass
class CustomerFeatures:
    """Per-customer attribute and coupon features (``frame``), what each column is, and how to use it."""

    frame: pd.DataFrame
    as_of: datetime
    numeric: list[str]
    categorical: list[str]
    registry: list[Feature]
    skipped: dict[str, str] = field(default_factory=dict)

    def registry_frame(self) -> pd.DataFrame:
        rows = [(f.name, f.description, f.unit) for f in self.registry]
        return pd.DataFrame(rows, columns=["feature", "description", "unit"])


def _ts(t: datetime) -> str:
    return f"TIMESTAMP '{t:%Y-%m-%d %H:%M:%S}'"


def _join_attribute(ingest: CustomersIngest) -> str | None:
    dates = [a.name for a in ingest.attributes if a.kind == "date"]
    for hint in _JOIN_HINTS:
        hit = next((d for d in dates if hint in normalize_name(d)), None)
        if hit is not None:
            return hit
    return dates[0] if dates else None


def _date_stem(name: str) -> str:
    stem = name.strip()
    for suffix in ("_date", " date", "date", "_at", "_on", "_time", "time"):
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            stem = stem[: -len(suffix)]
            break
    return "days_since_" + (normalize_name(stem) if not stem.replace("_", "").isalnum() else stem.lower())


def customers_as_of(backend: DuckDBBackend, ingest: CustomersIngest) -> datetime | None:
    """The day after the last date in the customer table and its coupon activity (None: there is no date)."""
    parts = [f"SELECT max({quote(a.name)}) AS t FROM customers" for a in ingest.attributes if a.kind == "date"]
    if ingest.activity is not None:
        parts.append("SELECT max(ts) AS t FROM coupons")
        if ingest.activity.has("burn_ts"):
            parts.append("SELECT max(burn_ts) AS t FROM coupons")
    if not parts:
        return None
    last = backend.scalar(f"SELECT max(t) FROM ({' UNION ALL '.join(parts)})")
    if last is None:
        return None
    return datetime(last.year, last.month, last.day) + timedelta(days=1)


def build_customer_features(
    backend: DuckDBBackend,
    ingest: CustomersIngest,
    as_of: datetime | None = None,
    cfg: CustomersConfig | None = None,
    *,
    table: str | None = "customer_features",
) -> CustomerFeatures:
    """Features of every clean customer as of ``as_of`` (default: :func:`customers_as_of`); needs the clean
    ``customers`` (and ``coupons``) tables of :func:`shopseg.clean.customers.clean_customers`."""
    cfg = cfg or CustomersConfig()
    skipped: dict[str, str] = {}
    when = as_of or customers_as_of(backend, ingest)
    registry: list[Feature] = []
    numeric: list[str] = []
    categorical: list[str] = []
    cols = ["c.customer_id"]
    origin = ingest.origin
    join = _join_attribute(ingest)
    for a in ingest.attributes:
        if a.kind == "numeric":
            cols.append(f"CAST(c.{quote(a.name)} AS DOUBLE) AS {quote(a.name)}")
            registry.append(Feature(a.name, a.describe(origin), "value"))
            numeric.append(a.name)
        elif a.kind == "categorical":
            cols.append(f"c.{quote(a.name)}")
            registry.append(Feature(a.name, a.describe(origin), "category", numeric=False))
            categorical.append(a.name)
        elif when is None:
            skipped[a.name] = "no as-of date to count days from"
        else:
            name = _date_stem(a.name)
            cols.append(
                f"CAST(date_diff('day', CAST(c.{quote(a.name)} AS DATE), CAST({_ts(when)} AS DATE)) AS DOUBLE) "
                f"AS {quote(name)}"
            )
            registry.append(Feature(name, f"days from {a.name} to the as-of date ({a.describe(origin)})", "days"))
            numeric.append(name)
    ctes = ""
    act = ingest.activity
    if act is not None and when is not None:
        burned = ", ".join("'" + v.lower().replace("'", "''") + "'" for v in cfg.burned_values) or "NULL"
        subscribed = ", ".join("'" + v.lower().replace("'", "''") + "'" for v in cfg.subscribed_values) or "NULL"
        distinct = [a.name for a in act.categorical]
        dsel = "".join(f", count(DISTINCT {quote(d)}) AS {quote('coupon_distinct_' + d)}" for d in distinct)
        ctes = (
            "WITH act AS ("
            "SELECT customer_id, count(*) AS n, min(ts) AS first_ts, max(ts) AS last_ts, "
            f"count(*) FILTER (WHERE status IN ({burned})) AS n_burned, "
            f"count(*) FILTER (WHERE status IN ({subscribed})) AS n_subscribed, "
            f"avg(date_diff('day', ts, burn_ts)) FILTER (WHERE status IN ({burned}) AND burn_ts >= ts) AS to_burn"
            f"{dsel} FROM coupons WHERE ts < {_ts(when)} GROUP BY customer_id) "
        )
        start = f"coalesce(CAST(c.{quote(join)} AS TIMESTAMP), act.first_ts)" if join else "act.first_ts"
        n = "coalesce(act.n, 0)"
        feats = {
            "coupon_transactions": f"CAST({n} AS DOUBLE)",
            "coupon_burned": "CAST(coalesce(act.n_burned, 0) AS DOUBLE)",
            "coupon_subscribed": "CAST(coalesce(act.n_subscribed, 0) AS DOUBLE)",
            "coupon_burn_rate": f"CASE WHEN {n} > 0 THEN act.n_burned / act.n END",
            "coupon_per_month": f"{n} * {MONTH_DAYS} / greatest(date_diff('day', {start}, {_ts(when)}), 1)",
            "days_since_last_coupon": f"CAST(date_diff('day', coalesce(act.last_ts, {start}), {_ts(when)}) AS DOUBLE)",
            "days_to_burn": "act.to_burn",
        }
        present = set(act.columns)
        for f in COUPON_FEATURES:
            if not set(f.requires) <= present:
                skipped[f.name] = f"needs the coupon column(s) {', '.join(f.requires)}"
                continue
            cols.append(f"CAST({feats[f.name]} AS DOUBLE) AS {f.name}")
            registry.append(f)
            numeric.append(f.name)
        for d in distinct:
            name = f"coupon_distinct_{d}"
            cols.append(f"CAST(coalesce(act.{quote(name)}, 0) AS DOUBLE) AS {quote(name)}")
            registry.append(Feature(name, f"distinct {d} values among the customer's coupon transactions", d))
            numeric.append(name)
    join_sql = " LEFT JOIN act USING (customer_id)" if ctes else ""
    sql = f"{ctes}SELECT {', '.join(cols)} FROM customers c{join_sql} ORDER BY c.customer_id"
    if table:
        backend.execute(f"CREATE OR REPLACE TABLE {quote(table)} AS {sql}")
        frame = backend.df(f"SELECT * FROM {quote(table)}")
    else:
        frame = backend.df(sql)
    if frame.empty:
        raise DataError("the customer table has no clean customer; see customers_reconciliation")
    frame["customer_id"] = frame["customer_id"].astype(str)
    for c in numeric:
        frame[c] = frame[c].astype("float64")
    for c in categorical:
        frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
    return CustomerFeatures(frame, when or datetime(1970, 1, 1), numeric, categorical, registry, skipped)


def attach_customer_features(features: FeatureSet, customers: CustomerFeatures) -> tuple[FeatureSet, dict[str, int]]:
    """The run's features with the customer columns joined on ``customer_id`` (the run's customers are kept;
    those missing from the customer table get empty attributes). Returns the joined set and the match counts."""
    clash = [c for c in customers.frame.columns if c != "customer_id" and c in features.frame.columns]
    right = customers.frame.drop(columns=clash)
    frame = features.frame.merge(right, on="customer_id", how="left", validate="one_to_one")
    ids = set(features.frame["customer_id"])
    table_ids = set(customers.frame["customer_id"])
    counts = {
        "run_customers": len(ids),
        "with_attributes": len(ids & table_ids),
        "without_attributes": len(ids - table_ids),
        "table_customers_not_in_run": len(table_ids - ids),
    }
    numeric = [*features.numeric, *(c for c in customers.numeric if c not in clash)]
    for c in customers.numeric:
        if c in frame and c not in clash:
            frame[c] = frame[c].astype("float64")
    fs = FeatureSet(frame, features.as_of, numeric, dict(features.skipped))
    return fs, counts


def as_feature_set(customers: CustomerFeatures) -> FeatureSet:
    """The customer features as the run's feature set (a run whose only source is the customer table)."""
    frame = customers.frame.copy()
    for c in customers.numeric:
        frame[c] = frame[c].astype("float64").replace([np.inf, -np.inf], np.nan)
    return FeatureSet(frame, customers.as_of, list(customers.numeric), dict(customers.skipped))


# ------------------------------------------------------------------------------------------ the run's customer source


@dataclass
class CustomerRun:
    """Everything a run learns from its customer table: the ingest and cleaning facts, the features, which of
    them the segmentation uses, and (once segmented) the encoder, the dominance check and the composition."""

    ingest: CustomersIngest
    clean: CustomersClean
    features: CustomerFeatures
    segment_numeric: list[str]
    segment_categorical: list[str]
    match: dict[str, int] | None = None
    encoder: CategoricalEncoder | None = None
    dominance: list[AttributeDominance] = field(default_factory=list)
    composition: pd.DataFrame | None = None

    @property
    def encoded(self) -> list[str]:
        """The encoded categorical columns added to the run's feature frame (``city~1`` …)."""
        return self.encoder.output_columns if self.encoder is not None else []

    @property
    def columns(self) -> list[str]:
        """Every column the customer table adds to the run's feature frame."""
        return [c for c in self.features.frame.columns if c != "customer_id"] + self.encoded

    def summary(self) -> dict[str, Any]:
        return {
            "ingest": self.ingest.summary(),
            "rows": self.clean.as_dict(),
            "match": self.match,
            "segment_numeric": self.segment_numeric,
            "segment_categorical": self.segment_categorical,
            "encoding": self.encoder.to_dict() if self.encoder is not None else None,
            "dominance": [
                {"attribute": d.attribute, "cramers_v": d.cramers_v, "purity": d.purity, "decides": d.decides}
                for d in self.dominance
            ],
        }


def load_customer_table(
    backend: DuckDBBackend,
    inputs: list[str],
    cfg: CustomersConfig,
    *,
    as_of: datetime | None,
    alone: bool = True,
    work: Path | None = None,
) -> CustomerRun:
    """Ingest, clean and build the features of the customer table (as of the run's ``as_of``, else the day
    after the table's last date); ``[customers] segment_on`` picks what the segmentation uses (``auto``:
    everything when the table is the run's only source (``alone``), else its coupon activity features only)."""
    ing = ingest_customers(backend, inputs, cfg, work=work)
    cl = clean_customers(backend, ing, cfg)
    cf = build_customer_features(backend, ing, as_of, cfg)
    wanted = cfg.segment_on
    if wanted == ["all"] or (wanted == ["auto"] and alone):
        numeric, categorical = list(cf.numeric), list(cf.categorical)
    elif wanted == ["auto"]:
        activity = {f.name for f in COUPON_FEATURES}
        numeric = [c for c in cf.numeric if c in activity or c.startswith("coupon_")]
        categorical = []
    else:
        known = set(cf.numeric) | set(cf.categorical)
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise ConfigError(
                f"customers.segment_on names {unknown}, which the customer table does not give; available: "
                f"{sorted(known)} (or 'auto', 'all', or [] for none)"
            )
        numeric = [c for c in cf.numeric if c in wanted]
        categorical = [c for c in cf.categorical if c in wanted]
    return CustomerRun(ing, cl, cf, numeric, categorical)


def join_run_features(run: CustomerRun, features: FeatureSet | None) -> FeatureSet:
    """The run's feature set with the customer columns: joined to the order/event features (the run's customers
    are kept), or the customer features alone when the run has no other source."""
    if features is None:
        return as_feature_set(run.features)
    joined, run.match = attach_customer_features(features, run.features)
    return joined


def encode_categoricals(run: CustomerRun, features: FeatureSet, cfg: CustomersConfig, scaling: str) -> dict[str, float]:
    """Fit the weighted one-hot encoder on the run's customers, add its columns to the feature frame and return
    their weights for the segmenter (which must scale with ``scaling``)."""
    if not run.segment_categorical:
        return {}
    run.encoder = CategoricalEncoder(run.segment_categorical, cfg.categorical_weight, cfg.max_levels).fit(
        features.frame
    )
    encoded = run.encoder.transform(features.frame)
    for c in encoded.columns:
        features.frame[c] = encoded[c].to_numpy()
    return run.encoder.weights(scaling if scaling in ("standard", "robust", "none") else "standard")


def check_segments(
    run: CustomerRun, frame: pd.DataFrame, labels: np.ndarray, cfg: CustomersConfig, *, max_values: int = 10
) -> str | None:
    """After segmentation: the composition table (segment × attribute value shares, table
    ``segment_composition``) and the dominance check of every categorical attribute; returns the warning text
    when an attribute the segmentation used alone decides the segments."""
    attrs = [c for c in run.features.categorical if c in frame.columns]
    run.composition = segment_composition(frame, labels, attrs, max_values=max_values)
    run.dominance = attribute_dominance(
        frame, labels, attrs, v_threshold=cfg.dominance_cramers_v, purity_threshold=cfg.dominance_purity
    )
    # an attribute the segmentation did not use may line up with behaviour: a finding, not an artefact
    return dominance_warning([d for d in run.dominance if d.attribute in run.segment_categorical])


def extend_quarantine(backend: DuckDBBackend, run: CustomerRun) -> None:
    """Add the customer table's (and coupon activity's) quarantined rows to the run's ``quarantine`` view,
    told apart by ``source_table`` ('customers', 'coupons')."""
    parts = ["SELECT 'customers' AS source_table, * FROM customers_quarantine"]
    if run.clean.activity is not None:
        parts.append("SELECT 'coupons' AS source_table, * FROM coupons_quarantine")
    if backend.has_table("quarantine"):
        backend.execute("ALTER VIEW quarantine RENAME TO run_sources_quarantine")
        parts.insert(0, "SELECT * FROM run_sources_quarantine")
    backend.execute("CREATE OR REPLACE VIEW quarantine AS " + " UNION ALL BY NAME ".join(f"({p})" for p in parts))


def with_customer_columns(frame: pd.DataFrame, run: CustomerRun, source: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (e.g. features as of an earlier cut-off) with the customer columns of ``source`` (the run's
    feature frame) joined on ``customer_id``, so a model fitted with attributes can label it."""
    cols = [c for c in run.columns if c in source.columns and c not in frame.columns]
    if not cols:
        return frame
    return frame.merge(source[["customer_id", *cols]], on="customer_id", how="left")
