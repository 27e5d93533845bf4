"""Typed run configuration: a TOML file plus command-line overrides, validated once by pydantic.

Every setting has a default and a description; ``docs/configuration.md`` is generated from this module
and a test checks it is current.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shopseg.errors import ConfigError
from shopseg.schema import EVENT_COLUMNS, EVENT_TYPES, TRANSACTION_COLUMNS

DEFAULT_NON_PRODUCT_CODES: tuple[str, ...] = (
    "POST",
    "DOT",
    "M",
    "D",
    "S",
    "B",
    "C2",
    "CRUK",
    "PADS",
    "BANK CHARGES",
    "AMAZONFEE",
)
DEFAULT_NON_PRODUCT_PATTERNS: tuple[str, ...] = ("gift_%",)
DEFAULT_SEGMENT_FEATURES: tuple[str, ...] = ("recency_days", "frequency", "avg_order_value", "tenure_days")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputConfig(_Section):
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Explicit mapping canonical name -> source column, e.g. {customer_id = 'Kunde'}; "
        "automatic mapping fills the rest.",
    )
    delimiter: str | None = Field(None, description="CSV delimiter; detected when unset ('\\s+' = runs of spaces).")
    encoding: str | None = Field(None, description="CSV text encoding; detected when unset.")
    header: bool = Field(True, description="Whether CSV files start with a header line.")
    names: list[str] | None = Field(
        None, description="Column names for CSV files without a header (canonical names map directly)."
    )
    date_format: str | None = Field(
        None, description="strptime format of the date column; detected from the values when unset."
    )
    sheet: str | None = Field(None, description="Excel sheet to read; the first sheet when unset.")

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str]) -> dict[str, str]:
        known = {c.name for c in TRANSACTION_COLUMNS}
        bad = sorted(set(v) - known)
        if bad:
            raise ValueError(f"unknown canonical column(s) {bad}; known: {sorted(known)}")
        return v


class CleanConfig(_Section):
    non_product_codes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NON_PRODUCT_CODES),
        description="Product codes that are not products (postage, fees, manual lines); case-insensitive.",
    )
    non_product_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NON_PRODUCT_PATTERNS),
        description="SQL LIKE patterns of non-product codes (case-insensitive), e.g. 'gift_%'.",
    )
    outliers: Literal["off", "flag", "remove"] = Field(
        "off",
        description="Outlier customers by spend: off, flag them in the CRM file, or remove (quarantine).",
    )
    outlier_method: Literal["iqr", "mad"] = Field(
        "mad", description="iqr: above Q3 + t*IQR of log spend; mad: robust z-score of log spend above t."
    )
    outlier_threshold: float = Field(3.5, gt=0, description="t for the outlier rule.")


class FeaturesConfig(_Section):
    as_of: datetime | None = Field(
        None, description="Reference time for recency/tenure; default: the day after the last purchase."
    )

    @field_validator("as_of", mode="before")
    @classmethod
    def _parse_date(cls, v: Any) -> Any:
        if isinstance(v, date) and not isinstance(v, datetime):
            return datetime(v.year, v.month, v.day)
        return v


class EventsConfig(_Section):
    """Event logs (``--events FILE``, or files detected as events by their columns); see docs/method.md
    "Events and sessions"."""

    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Explicit mapping canonical event column -> source column, e.g. {customer_id = 'visitorid'}; "
        "automatic mapping fills the rest.",
    )
    event_types: dict[str, str] = Field(
        default_factory=dict,
        description="Extra event type names -> canonical type (view, cart, remove_from_cart, purchase, "
        "banner_view, banner_click), e.g. {wishlist = 'cart'}; compared case-insensitively. Unmapped types "
        "are quarantined.",
    )
    session_gap_minutes: float = Field(
        30.0,
        gt=0,
        description="Without a session id column, a gap longer than this between a customer's events starts a "
        "new session.",
    )
    delimiter: str | None = Field(None, description="CSV delimiter of event files; detected when unset.")
    encoding: str | None = Field(None, description="CSV text encoding of event files; detected when unset.")
    date_format: str | None = Field(
        None, description="strptime format of the event time; detected (incl. epoch s/ms/µs) when unset."
    )
    sheet: str | None = Field(None, description="Excel sheet of event files; the first sheet when unset.")

    @field_validator("columns")
    @classmethod
    def _known_event_columns(cls, v: dict[str, str]) -> dict[str, str]:
        known = {c.name for c in EVENT_COLUMNS}
        bad = sorted(set(v) - known)
        if bad:
            raise ValueError(f"unknown canonical event column(s) {bad}; known: {sorted(known)}")
        return v

    @field_validator("event_types")
    @classmethod
    def _known_event_types(cls, v: dict[str, str]) -> dict[str, str]:
        bad = sorted({t for t in v.values() if t not in EVENT_TYPES})
        if bad:
            raise ValueError(f"unknown canonical event type(s) {bad}; known: {list(EVENT_TYPES)}")
        return v


class SegmentConfig(_Section):
    algorithm: Literal[
        "kmeans", "minibatch", "ward", "gmm", "hdbscan", "rfm", "auto", "spark_kmeans", "spark_bisecting", "spark_gmm"
    ] = Field(
        "kmeans",
        description="kmeans (k-means++, several inits), minibatch (mini-batch K-Means), ward (agglomerative), gmm "
        "(Gaussian mixture), hdbscan (density; noise = 'unassigned'), rfm (quintile scores, 11 named segments) or "
        "auto (fits kmeans, ward, gmm and hdbscan and keeps one, saying why); spark_kmeans, spark_bisecting, "
        "spark_gmm: the final model fitted by Spark MLlib (docs/spark.md).",
    )
    k: int | None = Field(None, ge=1, description="Force this number of segments; chosen automatically when unset.")
    k_min: int = Field(2, ge=2, description="Smallest k tried.")
    k_max: int = Field(10, ge=2, description="Largest k tried.")
    features: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SEGMENT_FEATURES),
        description="Features the segmentation uses ('all' = every numeric feature).",
    )
    seed: int = Field(0, description="Seed of every random step in segmentation.")
    n_init: int = Field(10, ge=1, description="K-Means restarts per k.")
    silhouette_sample: int = Field(
        5_000, ge=100, description="Silhouette is computed on a seeded sample this big (memory: 8 x n² bytes)."
    )
    selection_sample: int = Field(
        20_000, ge=1000, description="k is chosen on a seeded sample this big; the final fit uses everyone."
    )
    gap_references: int = Field(
        10, ge=0, description="Uniform reference sets of the gap statistic (0 = no gap statistic)."
    )
    gap_sample: int = Field(1_000, ge=100, description="The gap statistic is computed on a seeded sample this big.")
    stability_resamples: int = Field(
        20, ge=0, description="Bootstrap refits for the stability of each k and each segment (0 = no stability)."
    )
    stability_sample: int = Field(
        2_000, ge=100, description="Stability is measured on a seeded sample of this many customers."
    )
    stability_threshold: float = Field(
        0.6, gt=0, le=1, description="Segments whose bootstrap Jaccard stability is below this are flagged unstable."
    )
    skew: Literal["log1p", "yeo-johnson", "none"] = Field(
        "log1p",
        description="Transform of skewed features (skewness above 1): log1p (non-negative features), yeo-johnson "
        "(any sign, fitted power) or none.",
    )
    scaling: Literal["standard", "robust", "quantile", "none"] = Field(
        "standard",
        description="Feature scaling: standard (mean, sd), robust (median, interquartile range), quantile (to a "
        "normal through the training quantiles) or none.",
    )
    pca: float | None = Field(
        None,
        gt=0,
        description="Optional PCA after scaling: a number of components (2, 3 …) or a share of variance to keep (0.9).",
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="Feature weights after scaling, e.g. {monetary = 2.0}; unlisted = 1."
    )
    drop_correlated: float | None = Field(
        0.95,
        gt=0,
        le=1,
        description="Drop a feature whose |correlation| with an earlier one exceeds this (the reason is recorded); "
        "unset = keep all.",
    )
    minibatch_threshold: int = Field(
        5_000_000, ge=1, description="kmeans: the final fit is mini-batch K-Means above this many customers."
    )
    ward_exact_limit: int = Field(
        20_000,
        ge=2,
        description="ward: exact up to this many customers; above it, fitted on a seeded sample this big and the "
        "rest assigned to the nearest segment centre.",
    )
    gmm_covariance: Literal["full", "tied", "diag", "spherical"] = Field(
        "full", description="gmm: covariance type of the mixture components."
    )
    gmm_n_init: int = Field(3, ge=1, description="gmm: EM restarts of the final fit.")
    hdbscan_min_cluster_size: int | None = Field(
        None, ge=2, description="hdbscan: smallest segment; default 2 % of the customers (at least 10)."
    )
    hdbscan_min_samples: int | None = Field(
        None,
        ge=1,
        description="hdbscan: neighbours that make a customer a core point; default 5 (at most min_cluster_size).",
    )
    hdbscan_fit_sample: int = Field(
        20_000, ge=100, description="hdbscan: fitted on a seeded sample this big; the rest assigned by the model."
    )
    auto_candidates: list[Literal["kmeans", "minibatch", "ward", "gmm", "hdbscan"]] = Field(
        default_factory=lambda: ["kmeans", "ward", "gmm", "hdbscan"],  # type: ignore[arg-type]
        description="auto: the algorithms compared (each with its own k selection and stability).",
    )


class NameOverride(_Section):
    name: str | None = Field(None, min_length=1, description="The segment's name in the report and CRM file.")
    action: str | None = Field(None, min_length=1, description="The segment's recommended action.")


class ProfileConfig(_Section):
    names: dict[str, NameOverride] = Field(
        default_factory=dict,
        description="Rename segments or change their action: keys are segment numbers ('0') or automatic names "
        "('At risk'), values {name = '...', action = '...'}, e.g. [profile.names] 0 = {name = 'VIP'}. "
        "Names must stay unique.",
    )
    rule_depth: int = Field(3, ge=1, le=3, description="Depth of the surrogate tree behind each segment's rules.")
    rule_features: list[str] = Field(
        default_factory=lambda: ["model"],
        description="Features the segment rules may use: 'model' = the segmentation features, 'all' = every "
        "numeric feature, or a list of names.",
    )
    rule_sample: int = Field(
        100_000, ge=1000, description="The rule trees are fitted on a seeded sample this big; figures use everyone."
    )


class RecommendConfig(_Section):
    n: int = Field(10, ge=1, le=1000, description="Recommendations per customer.")
    holdout_days: int = Field(30, ge=1, description="Days at the end held out to evaluate recommendations.")
    segment_top_n: int = Field(20, ge=1, description="Top products kept per segment.")
    rebuy_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="An item counts as often re-bought when this share of its buyers bought it in 2+ orders; "
        "default: the median over items bought by 5+ customers.",
    )
    evaluate: bool = Field(True, description="Evaluate recommenders on a time split.")
    eval_users: int = Field(
        5_000,
        ge=100,
        description="At most this many customers (a seeded sample of those with purchases on both sides of the "
        "cut-off) are scored in the evaluation; the report says when it is a sample.",
    )
    method: str = Field(
        "auto",
        description="Recommender whose lists are written to recommendations.parquet: 'auto' = the best of "
        "`methods` by `metric` on the time split (blend when not evaluated), or a method name.",
    )
    methods: list[str] = Field(
        default_factory=lambda: [
            "popularity",
            "trending",
            "segment_top",
            "segment_lift",
            "own_history",
            "cooccurrence",
            "item_knn",
            "blend",
        ],
        description="Recommenders compared on the time split. Also available: item_knn_cosine, als, bpr "
        "(matrix factorisation; slower, opt-in), spark_als (ALS fitted by Spark MLlib; needs the spark extra, runs "
        "on the Spark engine's session or a local one).",
    )
    metric: str = Field(
        "ndcg@10",
        description="Metric that picks the best recommender: precision, recall, ndcg, map, hit_rate, coverage "
        "or novelty, at k = 5, 10 or 20 (e.g. 'recall@10').",
    )
    select_mode: Literal["all", "new"] = Field(
        "all",
        description="Evaluation mode that picks the best: all = every product bought in the hold-out; new = only "
        "products new to the customer.",
    )
    rebuy: Literal["default", "always", "often", "never"] = Field(
        "default",
        description="Whether bought products may be recommended again: always, often (only products often "
        "re-bought, see rebuy_threshold), never; default = each recommender's own (blend and own_history: "
        "always; the others: often).",
    )
    fit_customers: int = Field(
        10_000,
        ge=100,
        description="Recommenders learn from at most this many customers (a seeded sample; evaluated customers "
        "always included); lists are still made for every customer.",
    )
    half_life_days: float = Field(
        60.0, gt=0, description="Recency weighting: a purchase this many days old counts half as much as today's."
    )
    trending_days: float = Field(14.0, gt=0, description="Window of the trending recommender and the blend's trend.")
    neighbours: int = Field(100, ge=1, description="Neighbours kept per product by item-kNN and co-occurrence.")
    min_pair_customers: int = Field(
        3, ge=1, description="Association rules need at least this many customers who bought both products."
    )
    bundle_min_orders: int = Field(10, ge=1, description="Bundles need at least this many orders with both products.")
    bundle_orders: int = Field(
        20_000, ge=100, description="Bundles are mined from a seeded sample of at most this many orders."
    )
    bundle_max_items: int = Field(
        50,
        ge=2,
        description="Orders with more lines than this are not baskets (restocks) and are skipped for bundles.",
    )
    heavy_max_customers: int = Field(
        100_000,
        ge=1,
        description="Lists for every customer from a neighbour or factor model (cooccurrence, item_knn, blend, "
        "als, bpr) only up to this many customers; above it they come from the best light recommender "
        "(popularity, trending, segment_top, segment_lift, own_history) and the report and manifest say so.",
    )
    factors: int = Field(64, ge=1, description="Latent factors of ALS and BPR.")
    iterations: int = Field(15, ge=1, description="ALS iterations (BPR runs 100 epochs).")
    als_alpha: float = Field(
        5.0, gt=0, description="ALS (als, spark_als): confidence = 1 + als_alpha x value for a bought product."
    )
    als_confidence: Literal["orders", "quantity", "recency"] = Field(
        "recency",
        description="ALS: the value behind the confidence: orders of the product, log1p(quantity), or "
        "recency-weighted orders (half-life recommend.half_life_days).",
    )
    als_regularization: float = Field(0.05, ge=0, description="ALS: L2 regularisation of the factors.")
    threads: int | None = Field(
        None, ge=1, description="Threads for implicit (kNN, ALS); unset = engine.threads, else all cores."
    )
    exclude_non_products: bool = Field(
        True, description="Never recommend codes in clean.non_product_codes / non_product_patterns."
    )
    exclude_products: list[str] = Field(
        default_factory=list,
        description="Product codes (or SQL LIKE patterns with % or _) never to recommend, e.g. carrier bags.",
    )
    exclude_categories: list[str] = Field(
        default_factory=list, description="Categories never to recommend (needs a category column)."
    )
    min_price: float | None = Field(None, ge=0, description="Do not recommend products with a median price below this.")
    max_price: float | None = Field(None, ge=0, description="Do not recommend products with a median price above this.")
    active_days: int | None = Field(
        None,
        ge=1,
        description="Out of catalogue: products not sold in this many days before as_of are not recommended.",
    )
    catalogue: Path | None = Field(
        None, description="CSV/Parquet of the product ids on sale (column product_id); others are not recommended."
    )

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        from shopseg.recommend.methods import METHODS

        if v != "auto" and v not in METHODS:
            raise ValueError(f"unknown recommender {v!r}; use 'auto' or one of {sorted(METHODS)}")
        return v

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str]) -> list[str]:
        from shopseg.recommend.methods import METHODS

        bad = [m for m in v if m not in METHODS]
        if bad:
            raise ValueError(f"unknown recommender(s) {bad}; known: {sorted(METHODS)}")
        if not v:
            raise ValueError("give at least one recommender")
        return list(dict.fromkeys(v))

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        from shopseg.recommend.evaluate import parse_metric

        try:
            parse_metric(v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return v


class EngineConfig(_Section):
    name: Literal["duckdb", "spark"] = Field(
        "duckdb",
        description="Engine that reads, cleans and computes features: duckdb (embedded, one machine) or spark "
        "(Apache Spark, local mode or a cluster; pip install 'shopseg[spark]' and Java 17+). Same SQL on both.",
    )
    spark_master: str = Field(
        "local[*]",
        description="Spark master: local[*] (every core of this machine), local[N], spark://host:7077, yarn, "
        "k8s://https://host:443 (see docs/spark.md).",
    )
    spark_driver_memory: str | None = Field(
        "4g",
        description="spark.driver.memory when shopseg starts Spark (in local mode the driver does all the work); "
        "unset = Spark's default (1g).",
    )
    spark_executor_memory: str | None = Field(
        None, description="spark.executor.memory on a cluster (e.g. '8g'); unset = the cluster's default."
    )
    spark_shuffle_partitions: int | None = Field(
        None,
        ge=1,
        description="spark.sql.shuffle.partitions; unset = Spark's 200, which adaptive query execution coalesces "
        "to fit the data. Raise it to 2-3x the cluster's cores for billions of rows.",
    )
    spark_warehouse: str | None = Field(
        None,
        description="Where the Spark engine keeps the run's tables (Parquet); unset = <run folder>/spark-tables. "
        "On a cluster: a location every executor reaches (hdfs://…, s3a://…, a shared mount).",
    )
    spark_conf: dict[str, str] = Field(
        default_factory=dict,
        description="Further Spark settings, e.g. {'spark.executor.cores' = '4'}; they win over the ones above.",
    )
    memory_limit: str | None = Field(
        "4GB",
        description="Memory DuckDB may use before it spills to the run folder (e.g. '2GB'); unset = DuckDB's "
        "default (80% of RAM).",
    )
    threads: int | None = Field(None, ge=1, description="Threads DuckDB may use; unset = all cores.")

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\s*\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", v, re.I):
            raise ValueError("expected a size such as '4GB' or '512MB'")
        return v


class CustomersConfig(_Section):
    """The customer table (``--customers FILE``, or a workbook such as the coupon data): attributes and
    coupon activity joined to the run's customers; see docs/method.md "Customer attributes"."""

    id_column: str | None = Field(
        None,
        description="Column of the customer table that holds the customer id; detected from its name "
        "(customer_id, CustomerID, user_id …) when unset.",
    )
    sheet: str | None = Field(
        None,
        description="Workbook sheet with one row per customer; when unset, a sheet named like customers/clients/"
        "users/members, else the first sheet whose id column is unique.",
    )
    activity_sheet: str | None = Field(
        None,
        description="Workbook sheet of per-customer coupon transactions (date, status burned/subscribed); "
        "detected when unset (a sheet with a non-unique customer id column and a date column); 'none' = ignore.",
    )
    resolve_lookups: bool = Field(
        True,
        description="Replace a column such as city_id by the name column of the sheet whose key it is (cities: "
        "city_id, city_name → city); chains (branch_id → branches → merchants) are followed.",
    )
    categorical: list[str] = Field(
        default_factory=list,
        description="Attributes treated as categorical even when their values are numbers (codes, postcodes); "
        "columns ending in 'id' always are.",
    )
    ignore: list[str] = Field(default_factory=list, description="Columns of the customer table not to use.")
    max_levels: int = Field(
        20,
        ge=2,
        description="A categorical attribute keeps its max_levels - 1 most frequent values; the rest become "
        "'other' (segmentation and composition). Text columns with a distinct value in nearly every row "
        "(names, e-mails) are left out.",
    )
    segment_on: list[str] = Field(
        default_factory=lambda: ["auto"],
        description="Customer-table columns the segmentation uses beside [segment] features. 'auto': every "
        "attribute and coupon feature when the customer table is the run's only source; with orders or events, "
        "the coupon (activity) features only, so that attributes describe the segments (composition) rather "
        "than make them. 'all' = every attribute and coupon feature, [] = none, or a list of names.",
    )
    categorical_weight: float = Field(
        1.0,
        gt=0,
        description="Each categorical attribute's one-hot block is scaled so that it weighs as much as this many "
        "standardised numeric features (same expected squared distance between two random customers).",
    )
    dominance_cramers_v: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Warn that one attribute alone decides the segments when its Cramér's V with the segments "
        "is at least this.",
    )
    dominance_purity: float = Field(
        0.95,
        gt=0.5,
        le=1,
        description="… or when every segment has at least this share of one value of the attribute and the "
        "segments do not all share that value.",
    )
    burned_values: list[str] = Field(
        default_factory=lambda: ["burned", "redeemed", "used"],
        description="Coupon status values meaning the coupon was used (case-insensitive).",
    )
    subscribed_values: list[str] = Field(
        default_factory=lambda: ["subscribed", "issued", "claimed", "active"],
        description="Coupon status values meaning the coupon was taken but not (yet) used (case-insensitive).",
    )


class SlotRates(_Section):
    ctr: float | None = Field(None, gt=0, le=1, description="Click-through rate of this slot.")
    cpc: float | None = Field(None, gt=0, description="Price per click an advertiser pays for this slot.")
    cpm: float | None = Field(None, gt=0, description="Price per 1,000 impressions for this slot.")


class BannersConfig(_Section):
    """Banner economics: internal promotion against selling the slot; see docs/method.md "Banner economics"."""

    enabled: bool = Field(True, description="Build the banner table (banners.csv and the report section).")
    slots: list[str] = Field(
        default_factory=lambda: ["main"],
        description="Banner slots valued when the events do not name slots (events with a slot column give their own).",
    )
    slot_rates: dict[str, SlotRates] = Field(
        default_factory=dict,
        description="Per-slot rates that replace the defaults below, e.g. [banners.slot_rates.home_hero] "
        "ctr = 0.01, cpc = 0.8.",
    )
    ctr: float = Field(
        0.0046,
        gt=0,
        le=1,
        description="Click-through rate when events do not measure it: 0.46 %, the average Google Display "
        "Network CTR (WordStream benchmarks).",
    )
    conversion: float = Field(
        0.02,
        gt=0,
        le=1,
        description="Share of banner clicks that lead to an order when events do not measure it: 2 %, about "
        "the average e-commerce conversion rate.",
    )
    margin: float = Field(
        0.3, gt=0, le=1, description="Gross margin on the promoted products' revenue (share of the order value)."
    )
    aov: float | None = Field(
        None, gt=0, description="Average order value per segment; default: measured from the segment's orders."
    )
    cpc: float = Field(
        0.63,
        gt=0,
        description="Price an advertiser would pay per click on the slot: 0.63 (USD), the average Google "
        "Display Network CPC (WordStream benchmarks). Use your own currency's figure.",
    )
    cpm: float | None = Field(
        None,
        gt=0,
        description="Price per 1,000 impressions if the slot is sold by impressions; replaces CTR × CPC when set.",
    )
    external_ctr: float | None = Field(
        None, gt=0, le=1, description="CTR of an external ad in the slot; default: the slot's own CTR."
    )
    attribution_hours: float = Field(
        24, gt=0, description="An order within this many hours after a banner click counts as its conversion."
    )
    prior_impressions: float = Field(
        1000,
        ge=0,
        description="A measured CTR is shrunk toward the configured one as if that rate had been seen on this many "
        "more impressions (0 = the raw measured rate): few impressions alone give a noisy rate.",
    )
    prior_clicks: float = Field(
        50,
        ge=0,
        description="A measured conversion is shrunk toward the configured one as if that rate had been seen on "
        "this many more clicks (0 = the raw measured rate): 0 orders after 4 clicks does not mean 0 %.",
    )
    impression_events: list[str] = Field(
        default_factory=lambda: ["banner_view"],
        description="Event types counted as banner impressions (after the events' type mapping, which already "
        "reads view_promotion, promotion_viewed, banner_impression … as banner_view).",
    )
    click_events: list[str] = Field(
        default_factory=lambda: ["banner_click"],
        description="Event types counted as banner clicks (select_promotion, promo_click … map to banner_click).",
    )
    bootstrap: int = Field(
        1000, ge=0, description="Bootstrap resamples of the segment's customers for the ratio's interval (0 = none)."
    )
    confidence: float = Field(0.9, gt=0, lt=1, description="Coverage of the bootstrap percentile interval.")
    keep_above: float = Field(
        1.0,
        gt=0,
        description="Keep the slot internal when the interval's lower end of internal/external is above this.",
    )
    sell_below: float = Field(
        1.0, gt=0, description="Sell the slot when the interval's upper end of internal/external is below this."
    )
    products: int = Field(3, ge=1, description="Products to feature per segment (its top recommended products).")
    hours: int = Field(3, ge=1, le=24, description="Best hours (UTC) listed per segment.")


class ImpactConfig(_Section):
    """Revenue effect of uplifts per segment; see docs/method.md "Impact scenarios"."""

    aov_uplift: float = Field(0.10, ge=0, description="Scenario: average order value up by this share (0.10 = +10 %).")
    retention_uplift: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Scenario: this share of the segment's customers (percentage points) more stay active for a "
        "year at the segment's usual rate.",
    )
    extra_orders: float = Field(1.0, ge=0, description="Scenario: this many more orders per customer per year.")


class RunConfig(_Section):
    engine: EngineConfig = Field(default_factory=EngineConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    customers: CustomersConfig = Field(default_factory=CustomersConfig)
    banners: BannersConfig = Field(default_factory=BannersConfig)
    impact: ImpactConfig = Field(default_factory=ImpactConfig)


def _format_validation(err: ValidationError, origin: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        parts.append(f"{loc}: {e['msg']} (got {e.get('input')!r})")
    return f"invalid configuration in {origin}: " + "; ".join(parts)


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None, *, base: RunConfig | None = None
) -> RunConfig:
    """Read a TOML file (optional) and apply dotted overrides such as ``{"segment.k": 4}``. Without a file the
    overrides apply to ``base`` (e.g. a finished run's own settings) when given, else to the defaults."""
    data: dict[str, Any] = base.model_dump(mode="json") if base is not None and path is None else {}
    origin = "defaults" if base is None else "the run's settings"
    if path is not None:
        p = Path(path)
        origin = str(p)
        if not p.is_file():
            raise ConfigError(f"config file '{p}' not found; pass an existing TOML file with --config")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file '{p}' is not valid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *heads, last = dotted.split(".")
        for h in heads:
            node = node.setdefault(h, {})
        node[last] = value
        origin = f"{origin} + command-line options" if "command-line" not in origin else origin
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, origin)) from None
    if cfg.segment.k_min > cfg.segment.k_max:
        raise ConfigError(f"segment.k_min ({cfg.segment.k_min}) is above segment.k_max ({cfg.segment.k_max})")
    return cfg
