"""Banner strategy: for each segment and banner slot, is the slot worth more as an internal promotion or sold
as an external ad?

Per 1,000 impressions of the slot shown to the segment (formulas in docs/method.md, "Banner economics"):

* internal promotion: ``1000 × CTR × conversion × AOV × margin`` (the gross margin of the orders it brings);
* external ad: ``1000 × CTR_ext × CPC``, or the ``CPM`` when the slot is sold by impressions;
* ratio internal / external, with a seeded bootstrap percentile interval over the segment's customers;
* break-even CPC ``CTR × conversion × AOV × margin / CTR_ext``: the price per click at which selling pays as
  much as promoting (with ``CTR_ext = CTR``, simply the margin a click brings: ``conversion × AOV × margin``);
* a recommendation: *keep internal* when the interval's lower end is above ``keep_above`` (1 by default),
  *sell* when its upper end is below ``sell_below`` (1), else *mix* (split the slot's impressions and measure).

Rates come from the run's events when they hold banner impressions and clicks (``banner_view`` /
``banner_click``, per ``banner_slot``): CTR = clicks / impressions, conversion = share of clicks followed by an
order of the same customer within ``attribution_hours``, each shrunk toward the configured rate as if that had
been seen on ``prior_impressions`` / ``prior_clicks`` more trials (so 0 orders after 4 clicks is not 0 %).
Otherwise (and for a segment with no impressions or clicks) they come from ``[banners]`` with documented
defaults. AOV is the segment's revenue per order (or ``[banners] aov``). A run without any order value (the
coupon workbook has no amounts) still gets its table: the AOV is left empty, and so are the internal value and
the ratio, but the external value, the rates and the **break-even AOV** ``external / (1000 × CTR × conversion ×
margin)`` are computed from the config: promoting pays more than selling when an order brought by the banner is
worth more than that (advice "no order value"; set ``[banners] aov`` or ``shopseg banners --aov`` to decide).
Each row also lists the products to feature (the segment's top products, table ``segment_items``; without
them, in a coupon run, the merchants whose coupons the segment burns most) and its best hours (events by hour
of day, else orders, else coupon transactions; dates without a time of day give the best weekdays instead).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopseg.backends.duckdb import DuckDBBackend
from shopseg.config import BannersConfig, RunConfig
from shopseg.errors import ConfigError, DataError, NotFoundError

__all__ = [
    "BannerResult",
    "Sample",
    "banner_table",
    "banners_for_run",
    "best_hours",
    "bootstrap_ratio",
    "break_even_aov",
    "break_even_cpc",
    "decide",
    "external_per_1000",
    "internal_per_1000",
    "load_run",
    "shrunk_rate",
]

#: Up to this many customers the bootstrap resamples customers; above it, the resampled sums are drawn from
#: their normal limit N(n·mean, n·covariance) (central limit theorem), which costs the same for any n.
BOOTSTRAP_MAX_N = 20_000
_CHUNK = 25

COLUMNS = [
    "segment",
    "segment_name",
    "slot",
    "customers",
    "impressions",
    "clicks",
    "ctr",
    "conversion",
    "aov",
    "margin",
    "cpc",
    "cpm",
    "external_ctr",
    "internal_per_1000",
    "external_per_1000",
    "ratio",
    "ratio_low",
    "ratio_high",
    "break_even_cpc",
    "break_even_aov",
    "recommendation",
    "rates_from",
    "featured_products",
    "best_hours",
]


def internal_per_1000(ctr: float, conversion: float, aov: float, margin: float) -> float:
    """Expected gross margin of 1,000 impressions of an internal promotion."""
    return 1000.0 * ctr * conversion * aov * margin


def external_per_1000(ctr: float, cpc: float, cpm: float | None = None) -> float:
    """Expected income of 1,000 impressions sold as an external ad: the CPM, else CTR × CPC per impression."""
    return float(cpm) if cpm is not None else 1000.0 * ctr * cpc


def break_even_cpc(ctr: float, conversion: float, aov: float, margin: float, external_ctr: float) -> float:
    """The price per click at which selling the slot pays as much as the internal promotion."""
    return ctr * conversion * aov * margin / external_ctr if external_ctr > 0 else float("nan")


def break_even_aov(ctr: float, conversion: float, margin: float, external: float) -> float:
    """The order value at which 1,000 impressions of the internal promotion earn ``external`` (the slot's
    external value per 1,000 impressions): ``external / (1000 × CTR × conversion × margin)``."""
    den = 1000.0 * ctr * conversion * margin
    return external / den if den > 0 else float("nan")


def decide(low: float, high: float, keep_above: float = 1.0, sell_below: float = 1.0) -> str:
    """'keep internal' when the interval is above ``keep_above``, 'sell' when below ``sell_below``, else 'mix'."""
    if np.isnan(low) or np.isnan(high):
        return "no data"
    if low > keep_above:
        return "keep internal"
    if high < sell_below:
        return "sell"
    return "mix"


@dataclass
class Sample:
    """Per-customer figures of one segment (and slot): impressions, clicks, converted clicks, revenue, orders."""

    impressions: np.ndarray
    clicks: np.ndarray
    converted: np.ndarray
    revenue: np.ndarray
    orders: np.ndarray

    def __len__(self) -> int:
        return len(self.revenue)


@dataclass(frozen=True)
class _Rates:
    ctr: float
    conversion: float
    aov: float
    margin: float
    cpc: float
    cpm: float | None
    external_ctr: float | None  # None: the slot's own CTR
    ctr_measured: bool
    conversion_measured: bool
    aov_measured: bool
    ctr_prior: float = 0.0  # configured CTR that a measured one is shrunk toward
    conversion_prior: float = 0.0
    prior_impressions: float = 0.0
    prior_clicks: float = 0.0

    def ratio(self, ctr: float, conversion: float, aov: float) -> float:
        internal = ctr * conversion * aov * self.margin
        if self.cpm is None and self.external_ctr is None:
            return conversion * aov * self.margin / self.cpc  # the CTR cancels
        external = external_per_1000(self.external_ctr if self.external_ctr is not None else ctr, self.cpc, self.cpm)
        return 1000.0 * internal / external if external > 0 else float("nan")


def shrunk_rate(successes: float, trials: float, prior: float, strength: float) -> float:
    """``(successes + strength × prior) / (trials + strength)``: the measured rate pulled toward ``prior`` as if
    it had been seen on ``strength`` more trials (a Beta prior); the prior itself without trials."""
    total = trials + strength
    return (successes + strength * prior) / total if total > 0 else prior


def _shrunk(successes: np.ndarray, trials: np.ndarray, prior: float, strength: float) -> np.ndarray:
    total = trials + strength
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = np.where(total > 0, (successes + strength * prior) / np.where(total > 0, total, 1), prior)
    return out


def _ratio_of_sums(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    return out


def bootstrap_ratio(
    sample: Sample,
    rates: _Rates,
    *,
    n_boot: int,
    confidence: float,
    seed: int | list[int],
    max_n: int = BOOTSTRAP_MAX_N,
) -> tuple[float, float]:
    """Percentile interval of the ratio internal/external over resamples of the segment's customers (above
    ``max_n`` customers, over draws of the resampled sums from their normal limit). Only the measured rates
    vary; configured ones are fixed. Deterministic for a given seed."""
    point = rates.ratio(rates.ctr, rates.conversion, rates.aov)
    n = len(sample)
    if n_boot <= 0 or n == 0:
        return point, point
    rng = np.random.default_rng(seed)
    arrays = np.column_stack(
        [sample.impressions, sample.clicks, sample.converted, sample.revenue, sample.orders]
    ).astype("float64")
    if n <= max_n:
        sums = np.empty((n_boot, 5))
        for start in range(0, n_boot, _CHUNK):
            b = min(_CHUNK, n_boot - start)
            idx = rng.integers(0, n, size=(b, n))
            for j in range(b):  # counts of each customer in the resample, then weighted sums
                sums[start + j] = np.bincount(idx[j], minlength=n) @ arrays
    else:
        mean = arrays.mean(axis=0)
        cov = np.cov(arrays, rowvar=False, bias=True)
        sums = np.clip(rng.multivariate_normal(n * mean, n * cov, size=n_boot, method="eigh"), 0.0, None)
    if rates.ctr_measured:
        ctr = _shrunk(sums[:, 1], sums[:, 0], rates.ctr_prior, rates.prior_impressions)
    else:
        ctr = np.full(n_boot, rates.ctr)
    if rates.conversion_measured:
        conv = _shrunk(sums[:, 2], sums[:, 1], rates.conversion_prior, rates.prior_clicks)
    else:
        conv = np.full(n_boot, rates.conversion)
    aov = _ratio_of_sums(sums[:, 3], sums[:, 4]) if rates.aov_measured else np.full(n_boot, rates.aov)
    reps = np.asarray([rates.ratio(float(c), float(v), float(a)) for c, v, a in zip(ctr, conv, aov, strict=True)])
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return point, point
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


@dataclass
class BannerResult:
    """The banner table and what the run should say about it."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    source: str = "config"  # "events" when banner events were found


# ------------------------------------------------------------------------------------------ data from the run


def _sql_list(values: list[str]) -> str:
    return ", ".join("'" + v.lower().replace("'", "''") + "'" for v in values) or "NULL"


def _has_rows(backend: DuckDBBackend, table: str) -> bool:
    return backend.has_table(table) and bool(backend.scalar(f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)"))


def _event_columns(backend: DuckDBBackend) -> set[str]:
    return {c for c, _ in backend.columns("events")} if backend.has_table("events") else set()


_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def best_hours(backend: DuckDBBackend, n: int, segments: str = "segments") -> dict[int, str]:
    """Per segment, the ``n`` hours of the day (as recorded, UTC for event logs) with the most activity: events
    of the segment's customers when the run has events, else their orders, else their coupon transactions.
    When none of the activity's times has a time of day (dates only, as in the coupon workbook), the ``n``
    weekdays with the most activity instead (an hour would be meaningless)."""
    if _has_rows(backend, "events"):
        src, what = "SELECT customer_id, ts FROM events", "events"
    elif _has_rows(backend, "transactions"):
        # the orders' times once, for the time-of-day check and the counts
        backend.execute(
            "CREATE OR REPLACE TEMP TABLE _banner_orders AS "
            "SELECT customer_id, min(ts) AS ts FROM transactions GROUP BY customer_id, order_id"
        )
        try:
            return _best_hours(backend, n, segments, "SELECT * FROM _banner_orders", "orders")
        finally:
            backend.execute("DROP TABLE IF EXISTS _banner_orders")
    elif _has_rows(backend, "coupons"):
        src, what = "SELECT customer_id, ts FROM coupons WHERE ts IS NOT NULL", "coupon transactions"
    else:
        return {}
    return _best_hours(backend, n, segments, src, what)


def _best_hours(backend: DuckDBBackend, n: int, segments: str, src: str, what: str) -> dict[int, str]:
    """:func:`best_hours` on the activity ``src`` (customer_id, ts), named ``what``."""
    timed = backend.scalar(f"SELECT count(*) FROM (SELECT 1 FROM ({src}) WHERE ts <> date_trunc('day', ts) LIMIT 1)")
    key = "hour(a.ts)" if timed else "isodow(a.ts)"
    rows = backend.df(
        f"WITH a AS ({src}), h AS (SELECT s.segment, {key} AS hr, count(*) AS n FROM a "
        f"JOIN {segments} s USING (customer_id) GROUP BY 1, 2) "
        "SELECT segment, hr, n FROM (SELECT *, row_number() OVER (PARTITION BY segment ORDER BY n DESC, hr) AS r "
        f"FROM h) WHERE r <= {int(n)} ORDER BY segment, r"
    )
    out: dict[int, str] = {}
    for seg, g in rows.groupby("segment", sort=True):
        if timed:
            parts = [f"{int(r.hr):02d}-{(int(r.hr) + 1) % 24:02d}h ({int(r.n):,} {what})" for r in g.itertuples()]
        else:
            days = ", ".join(f"{_WEEKDAYS[int(r.hr) - 1]} ({int(r.n):,})" for r in g.itertuples())
            parts = [f"{days} {what} by weekday (the dates carry no time of day)"]
        out[int(seg)] = ", ".join(parts)  # type: ignore[call-overload]
    return out


def _featured_coupons(backend: DuckDBBackend, n: int, segments: str) -> dict[int, str]:
    """Without product recommendations, in a run with coupon activity: per segment, the ``n`` merchants (else
    branches) whose coupons its customers burned most (taken, when none was burned)."""
    if not _has_rows(backend, "coupons"):
        return {}
    cols = {c for c, _ in backend.columns("coupons")}
    col = next((c for c in ("merchant", "branch") if c in cols), None)
    if col is None:
        return {}
    rows = backend.df(
        f"WITH h AS (SELECT s.segment, CAST(c.{col} AS VARCHAR) AS v, "
        "count(*) FILTER (WHERE c.burn_ts IS NOT NULL) AS burned, count(*) AS n "
        f"FROM coupons c JOIN {segments} s USING (customer_id) WHERE c.{col} IS NOT NULL GROUP BY 1, 2) "
        "SELECT segment, v, burned, n FROM (SELECT *, row_number() OVER (PARTITION BY segment "
        f"ORDER BY burned DESC, n DESC, v) AS r FROM h) WHERE r <= {int(n)} ORDER BY segment, r"
        if "burn_ts" in cols
        else f"WITH h AS (SELECT s.segment, CAST(c.{col} AS VARCHAR) AS v, 0 AS burned, count(*) AS n "
        f"FROM coupons c JOIN {segments} s USING (customer_id) WHERE c.{col} IS NOT NULL GROUP BY 1, 2) "
        "SELECT segment, v, burned, n FROM (SELECT *, row_number() OVER (PARTITION BY segment "
        f"ORDER BY n DESC, v) AS r FROM h) WHERE r <= {int(n)} ORDER BY segment, r"
    )
    out: dict[int, str] = {}
    for seg, g in rows.groupby("segment", sort=True):
        out[int(seg)] = f"{col}s: " + "; ".join(  # type: ignore[call-overload]
            f"{r.v} ({int(r.burned):,} burned of {int(r.n):,})" for r in g.itertuples()
        )
    return out


def _featured(backend: DuckDBBackend, n: int, segments: str = "segments") -> dict[int, str]:
    if not backend.has_table("segment_items"):
        return _featured_coupons(backend, n, segments)
    names_sql = (
        "SELECT product_id, arg_min(product_name, (-k, product_name)) AS product_name FROM ("
        "SELECT product_id, product_name, count(*) AS k FROM transactions WHERE product_id IS NOT NULL "
        "AND product_name IS NOT NULL GROUP BY ALL) GROUP BY product_id"
        if backend.has_table("transactions")
        else "SELECT NULL::VARCHAR AS product_id, NULL::VARCHAR AS product_name WHERE false"
    )
    rows = backend.df(
        f"WITH names AS ({names_sql}) SELECT s.segment, s.product_id, names.product_name FROM segment_items s "
        f"LEFT JOIN names USING (product_id) WHERE s.seg_rank <= {int(n)} ORDER BY s.segment, s.seg_rank"
    )
    out: dict[int, str] = {}
    for seg, g in rows.groupby("segment", sort=True):
        names = [str(r.product_name) if isinstance(r.product_name, str) else "" for r in g.itertuples()]
        ids = [str(r.product_id) for r in g.itertuples()]
        counts = Counter(names)
        # a product without a name, or whose name another listed product shares, is shown with its id
        shown = [
            nm if nm and counts[nm] == 1 else (f"{nm} ({i})" if nm else i) for nm, i in zip(names, ids, strict=True)
        ]
        out[int(seg)] = "; ".join(shown)  # type: ignore[call-overload]
    return out


def _per_customer(backend: DuckDBBackend, cfg: BannersConfig, segments: str) -> tuple[pd.DataFrame, bool]:
    """One row per customer (and banner slot when banner events exist): segment, slot, impressions, clicks,
    converted clicks, revenue, orders. Returns the frame and whether banner events were found."""
    has_tx = _has_rows(backend, "transactions")
    orders = (
        # orders first, then customers: two hash passes cost less than a distinct count per customer
        "SELECT customer_id, sum(r) AS revenue, count(order_id) AS orders FROM (SELECT customer_id, order_id, "
        "sum(quantity * unit_price) AS r FROM transactions GROUP BY 1, 2) GROUP BY 1"
        if has_tx
        else "SELECT NULL::VARCHAR AS customer_id, 0.0 AS revenue, 0 AS orders WHERE false"
    )
    imp, clk = _sql_list(cfg.impression_events), _sql_list(cfg.click_events)
    ev_cols = _event_columns(backend)
    has_banner = bool(ev_cols) and bool(
        backend.scalar(f"SELECT count(*) FROM (SELECT 1 FROM events WHERE lower(event_type) IN ({imp}) LIMIT 1)")
    )
    base = f"SELECT s.customer_id, s.segment FROM {segments} s"
    if not has_banner:
        df = backend.df(
            f"WITH o AS ({orders}) SELECT b.customer_id, b.segment, '' AS slot, 0 AS impressions, 0 AS clicks, "
            "0 AS converted, coalesce(o.revenue, 0.0) AS revenue, coalesce(o.orders, 0) AS orders "
            f"FROM ({base}) b LEFT JOIN o USING (customer_id) ORDER BY b.segment, b.customer_id"
        )
        return df, False
    slot = "coalesce(CAST(banner_slot AS VARCHAR), 'all')" if "banner_slot" in ev_cols else "'all'"
    buys = (
        "SELECT customer_id, min(ts) AS ts FROM transactions GROUP BY customer_id, order_id"
        if has_tx
        else "SELECT NULL::VARCHAR AS customer_id, NULL::TIMESTAMP AS ts WHERE false"
    )
    hours = float(cfg.attribution_hours)
    df = backend.df(
        f"""
        WITH o AS ({orders}),
        buys AS ({buys}),
        imp AS (SELECT customer_id, {slot} AS slot, count(*) AS impressions FROM events
                WHERE lower(event_type) IN ({imp}) GROUP BY 1, 2),
        clk AS (SELECT customer_id, {slot} AS slot, ts FROM events WHERE lower(event_type) IN ({clk})),
        conv AS (SELECT c.customer_id, c.slot, count(*) AS clicks,
                        count(*) FILTER (WHERE b.ts <= c.ts + to_microseconds(CAST({hours} * 3600e6 AS BIGINT)))
                            AS converted
                 FROM clk c ASOF LEFT JOIN buys b ON c.customer_id = b.customer_id AND b.ts >= c.ts
                 GROUP BY 1, 2),
        slots AS (SELECT DISTINCT slot FROM imp UNION SELECT DISTINCT slot FROM conv)
        SELECT b.customer_id, b.segment, slots.slot, coalesce(imp.impressions, 0) AS impressions,
               coalesce(conv.clicks, 0) AS clicks, coalesce(conv.converted, 0) AS converted,
               coalesce(o.revenue, 0.0) AS revenue, coalesce(o.orders, 0) AS orders
        FROM ({base}) b CROSS JOIN slots
        LEFT JOIN imp ON imp.customer_id = b.customer_id AND imp.slot = slots.slot
        LEFT JOIN conv ON conv.customer_id = b.customer_id AND conv.slot = slots.slot
        LEFT JOIN o ON o.customer_id = b.customer_id
        ORDER BY b.segment, slots.slot, b.customer_id
        """
    )
    return df, True


def banner_table(
    backend: DuckDBBackend,
    cfg: BannersConfig | None = None,
    *,
    seed: int = 0,
    segments: str = "segments",
    names: dict[int, str] | None = None,
) -> BannerResult:
    """The banner table for every segment and slot of a run (needs its ``segments`` table; uses ``transactions``,
    ``events`` and ``segment_items`` when present). See the module docstring for the figures."""
    cfg = cfg or BannersConfig()
    if cfg.keep_above < cfg.sell_below:
        raise ConfigError(
            f"banners.keep_above ({cfg.keep_above}) is below banners.sell_below ({cfg.sell_below}); "
            "an interval could then call for both keeping and selling"
        )
    if not backend.has_table(segments):
        raise NotFoundError(f"the run has no '{segments}' table; run the pipeline first")
    notes: list[str] = []
    df, measured = _per_customer(backend, cfg, segments)
    if names is None:
        names = {}
        if "segment_name" in {c for c, _ in backend.columns(segments)}:
            nm = backend.df(f"SELECT DISTINCT segment, segment_name FROM {segments}")
            names = {int(r.segment): str(r.segment_name) for r in nm.itertuples()}
    total_orders = float(df.drop_duplicates("customer_id")["orders"].sum())
    if cfg.aov is None and total_orders == 0:
        notes.append(
            "no order values in this run: the AOV, the internal value and the ratio are left empty; the external "
            "value and the break-even AOV (the order value above which promoting pays more than selling) are "
            "computed from [banners]; set [banners] aov (or shopseg banners --aov) to get the advice"
        )
    featured = _featured(backend, cfg.products, segments)
    hours = best_hours(backend, cfg.hours, segments)
    rows = []
    slot_names = sorted(df["slot"].unique()) if measured else list(cfg.slots)
    if measured:
        notes.append(
            "banner CTR and conversion measured from the events' banner impressions and clicks (slots: "
            + ", ".join(slot_names)
            + f"); an order within {cfg.attribution_hours:g} h after a click counts as its conversion"
        )
    for seg, g in df.groupby("segment", sort=True):
        seg = int(seg)  # type: ignore[call-overload]
        for i, slot in enumerate(slot_names):
            h = g[g["slot"] == slot] if measured else g
            sample = Sample(
                h["impressions"].to_numpy(float),
                h["clicks"].to_numpy(float),
                h["converted"].to_numpy(float),
                h["revenue"].to_numpy(float),
                h["orders"].to_numpy(float),
            )
            # seed as a sequence: segment -1 (HDBSCAN's unassigned) must not give a negative seed
            rows.append(_row(seg, names.get(seg, f"Segment {seg}"), slot, sample, cfg, [seed, seg + 1, i]))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["featured_products"] = [featured.get(int(x), "") for x in table["segment"]]
    table["best_hours"] = [hours.get(int(x), "") for x in table["segment"]]
    if not measured:
        notes.append(
            f"no banner events in this run: CTR {cfg.ctr:.2%} and conversion {cfg.conversion:.1%} are taken from "
            "[banners] (documented defaults); "
            + (
                "without order values there is no interval"
                if cfg.aov is None and total_orders == 0
                else "the interval covers the segment's order value only"
            )
        )
    return BannerResult(table, notes, "events" if measured else "config")


def _row(seg: int, name: str, slot: str, sample: Sample, cfg: BannersConfig, seed: list[int]) -> list[Any]:
    sr = cfg.slot_rates.get(slot)
    ctr_cfg = sr.ctr if sr is not None and sr.ctr is not None else cfg.ctr
    cpc = sr.cpc if sr is not None and sr.cpc is not None else cfg.cpc
    cpm = sr.cpm if sr is not None and sr.cpm is not None else cfg.cpm
    imps, clicks, conv = float(sample.impressions.sum()), float(sample.clicks.sum()), float(sample.converted.sum())
    revenue, orders = float(sample.revenue.sum()), float(sample.orders.sum())
    ctr_m, conv_m = imps > 0, clicks > 0
    aov_m = cfg.aov is None and orders > 0
    ctr = shrunk_rate(clicks, imps, ctr_cfg, cfg.prior_impressions) if ctr_m else ctr_cfg
    conversion = shrunk_rate(conv, clicks, cfg.conversion, cfg.prior_clicks) if conv_m else cfg.conversion
    aov = revenue / orders if aov_m else (cfg.aov or float("nan"))
    rates = _Rates(
        ctr,
        conversion,
        aov,
        cfg.margin,
        cpc,
        cpm,
        cfg.external_ctr,
        ctr_m,
        conv_m,
        aov_m,
        ctr_cfg,
        cfg.conversion,
        cfg.prior_impressions,
        cfg.prior_clicks,
    )
    ext_ctr = cfg.external_ctr if cfg.external_ctr is not None else ctr
    internal = internal_per_1000(ctr, conversion, aov, cfg.margin)
    external = external_per_1000(ext_ctr, cpc, cpm)
    ratio = rates.ratio(ctr, conversion, aov)
    low, high = bootstrap_ratio(sample, rates, n_boot=cfg.bootstrap, confidence=cfg.confidence, seed=seed)
    sources = [
        f"ctr: {('events, shrunk' if cfg.prior_impressions else 'events') if ctr_m else 'config'}",
        f"conversion: {('events, shrunk' if cfg.prior_clicks else 'events') if conv_m else 'config'}",
        f"aov: {'orders' if aov_m else ('config' if cfg.aov is not None else 'not available')}",
    ]
    return [
        seg,
        name,
        slot,
        len(sample),
        int(imps),
        int(clicks),
        ctr,
        conversion,
        aov,
        cfg.margin,
        cpc,
        cpm,
        ext_ctr,
        internal,
        external,
        ratio,
        low,
        high,
        break_even_cpc(ctr, conversion, aov, cfg.margin, ext_ctr),
        break_even_aov(ctr, conversion, cfg.margin, external),
        decide(low, high, cfg.keep_above, cfg.sell_below) if aov == aov else "no order value",
        ", ".join(sources),
        "",
        "",
    ]


# ------------------------------------------------------------------------------------------ run directories


def load_run(run_dir: str | Path) -> tuple[Path, RunConfig, dict[str, Any]]:
    """A finished run's database path, its configuration (from ``manifest.json``) and the manifest."""
    d = Path(run_dir)
    db = d / "shopseg.duckdb"
    if not db.is_file():
        raise NotFoundError(
            f"'{d}' is not a shopseg run folder (no shopseg.duckdb); pass the folder `shopseg run` wrote"
        )
    manifest: dict[str, Any] = {}
    mpath = d / "manifest.json"
    if mpath.is_file():
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    try:
        cfg = RunConfig.model_validate(manifest.get("config", {}))
    except Exception:  # a manifest of another version: fall back to the defaults
        cfg = RunConfig()
    return db, cfg, manifest


def banners_for_run(
    run_dir: str | Path, cfg: BannersConfig | None = None, *, seed: int | None = None, write: bool = True
) -> BannerResult:
    """The banner table of a finished run (``shopseg banners RUN_DIR``), with the run's ``[banners]`` settings
    unless ``cfg`` is given; written to ``RUN_DIR/banners.csv`` when ``write``."""
    db, run_cfg, _ = load_run(run_dir)
    backend = DuckDBBackend(db)
    try:
        result = banner_table(backend, cfg or run_cfg.banners, seed=run_cfg.segment.seed if seed is None else seed)
        if write and not result.table.empty:
            backend.create_table("banners", result.table)
    finally:
        backend.close()
    if write and not result.table.empty:
        write_banners(result.table, Path(run_dir) / "banners.csv")
    if result.table.empty and not result.notes:
        raise DataError("no banner rows: the run has no segments")
    return result


def write_banners(table: pd.DataFrame, path: Path) -> None:
    """banners.csv (atomic)."""
    from shopseg.export import write_frame

    write_frame(table, path)
