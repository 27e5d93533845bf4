"""The pipeline as a list of steps, the run directory and its manifest.

``run()`` is what the CLI, the API and the tests call. Each step is a small function of the run state,
listed by name in ``STEPS``; the manifest records each step's wall time.
"""

from __future__ import annotations

import importlib
import logging
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shopseg.backends import open_engine
from shopseg.backends.base import Backend
from shopseg.backends.duckdb import DuckDBBackend
from shopseg.clean import CleanResult, clean_transactions
from shopseg.clean.events import clean_events, combine_quarantine, purchases_as_transactions
from shopseg.config import RunConfig
from shopseg.errors import ConfigError, DataError, InputError, ShopsegError
from shopseg.export import sha256, write_json, write_run_files
from shopseg.features import FeatureSet, build_features
from shopseg.features.events import build_run_features, default_segment_features, features_as_of
from shopseg.ingest import IngestResult, ingest_transactions
from shopseg.ingest.events import ingest_events, split_inputs

if TYPE_CHECKING:  # the modules behind these names import scikit-learn and SciPy: see _prefetch_imports
    from shopseg.features.customers import CustomerRun
    from shopseg.profile import SegmentRuleSet
    from shopseg.segment import Segmenter

__all__ = ["STEPS", "RunResult", "ScoredCustomers", "Step", "run", "score", "score_customers"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass
class RunState:
    """Everything a run has produced so far; steps read and add to it."""

    inputs: list[str]
    out: Path
    config: RunConfig
    backend: DuckDBBackend
    ingest: IngestResult | None = None
    clean: CleanResult | None = None
    features: FeatureSet | None = None
    segmenter: Segmenter | None = None
    labels: np.ndarray | None = None
    profiles: pd.DataFrame | None = None
    rules: SegmentRuleSet | None = None
    segment_products: pd.DataFrame | None = None
    rec_eval: pd.DataFrame | None = None
    rec_info: dict[str, Any] = field(default_factory=dict)
    rebuy_threshold: float | None = None
    files: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # input roles (issue 3): positional inputs are sorted into orders/events/customers by their columns
    # (shopseg.schema.source_role); --events / --customers name files explicitly
    order_inputs: list[str] = field(default_factory=list)
    event_inputs: list[str] = field(default_factory=list)
    customer_inputs: list[str] = field(default_factory=list)
    events_ingest: IngestResult | None = None
    events_clean: CleanResult | None = None
    insights: Any = None  # shopseg.insights.Insights
    customers: CustomerRun | None = None  # the customer table (--customers, or a customer workbook)
    banners: pd.DataFrame | None = None
    impact: pd.DataFrame | None = None
    # the engine that reads, cleans and computes the order features ([engine] name); None = the run's database
    engine: Backend | None = None
    step_names: tuple[str, ...] = ()
    # work started early on a second connection and collected by the step that needs it (name → future)
    pending: dict[str, Future[Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    func: Callable[[RunState], None]


def _sql(s: RunState) -> Backend:
    """The engine of the ingest, clean and features steps (after them, the run's DuckDB database holds all)."""
    return s.engine if s.engine is not None else s.backend


def _ingest(s: RunState) -> None:
    roles = split_inputs(s.inputs, s.config.input)
    s.order_inputs = roles["orders"]
    s.event_inputs = [*roles["events"], *s.event_inputs]
    s.customer_inputs = [*roles["customers"], *s.customer_inputs]
    if not s.order_inputs and not s.event_inputs and not s.customer_inputs:
        raise InputError("no input given; pass order files, --events FILE and/or --customers FILE")
    if s.order_inputs:
        s.ingest = ingest_transactions(_sql(s), s.order_inputs, s.config.input, work=s.out / ".work")
        s.notes += s.ingest.notes
    if s.event_inputs:
        s.events_ingest = ingest_events(_sql(s), s.event_inputs, s.config.events, work=s.out / ".work")
        s.notes += s.events_ingest.notes


def _clean(s: RunState) -> None:
    if s.ingest is not None:
        s.clean = clean_transactions(_sql(s), s.ingest, s.config.clean)
        _check_left(s, s.clean, "rows")
    if s.events_ingest is not None:
        before = len(s.events_ingest.notes)
        s.events_clean = clean_events(_sql(s), s.events_ingest, s.config.events)
        s.notes += s.events_ingest.notes[before:]
        _check_left(s, s.events_clean, "events")
    combine_quarantine(_sql(s), orders=s.ingest is not None, events=s.events_ingest is not None)


def _check_left(s: RunState, c: CleanResult, what: str) -> None:
    if c.clean_rows == 0:
        top = c.reconciliation.sort_values("rows", ascending=False).iloc[0]
        raise DataError(
            f"no {what} are left after cleaning: all {c.input_rows} were quarantined (mostly "
            f"'{top['code']}': {top['description']}); see {s.out / 'quarantine.parquet'} once written"
        )


def _columns(s: RunState) -> dict[str, set[str] | None]:
    """The mapped canonical columns of each source of the run (None: the run has no such source)."""
    return {
        "order_columns": set(s.ingest.mapping.source) if s.ingest is not None else None,
        "event_columns": set(s.events_ingest.mapping.source) if s.events_ingest is not None else None,
    }


def _features(s: RunState) -> None:
    if s.ingest is None and s.events_ingest is None:
        return  # only a customer table: its features are built by the customers step
    s.features = build_run_features(_sql(s), s.config.features.as_of, **_columns(s))
    # the later steps run on the driver's DuckDB database: the engine's tables become readable there
    _sql(s).publish(s.backend)
    for name, why in s.features.skipped.items():
        s.notes.append(f"feature {name} skipped: {why}")
    _start_interactions(s)


def _start_interactions(s: RunState) -> None:
    """Start building the recommend step's ``interactions_all`` and ``bundles_raw`` (SQL only, on a second
    connection) while the segment, profile and explain steps run, which are mostly Python on one core: the two
    overlap on a multi-core machine. The recommend step waits for it; the results are the same tables as when
    they are built there."""
    if "recommend" not in s.step_names or s.ingest is None or not s.ingest.has_products:
        return
    assert s.features is not None
    rc, as_of = s.config.recommend, s.features.as_of
    from shopseg.recommend.runner import prepare_bundles, prepare_interactions

    cur = s.backend.cursor()
    seed = s.config.segment.seed

    def build() -> None:
        try:
            prepare_interactions(
                cur,
                as_of=as_of,
                holdout_days=rc.holdout_days if rc.evaluate else None,
                half_life_days=rc.half_life_days,
            )
            prepare_bundles(cur, rc=rc, seed=seed)  # the product pairs need only the clean lines too
        finally:
            cur.close()

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shopseg-interactions")
    s.pending["interactions"] = pool.submit(build)
    pool.shutdown(wait=False)


# What the steps after ingest, clean and features import: scikit-learn, SciPy and plotly behind them take
# about two seconds of start-up, which _prefetch_imports spends while those three steps run SQL in DuckDB (which
# leaves the interpreter free).
_LATER_MODULES = (
    "shopseg.segment",
    "shopseg.profile",
    "shopseg.features.customers",
    "shopseg.recommend.runner",
    "shopseg.recommend.methods",
    "shopseg.insights",
    "shopseg.insights.banners",
    "shopseg.insights.impact",
    "shopseg.report",
)


def _prefetch_imports(s: RunState) -> None:
    """Import the later steps' modules on a thread while the first steps run. ``run`` waits for it
    (:func:`_imports_done`) before any later step, so no module is ever imported by two threads at once."""

    def load() -> None:
        for name in _LATER_MODULES:
            try:
                importlib.import_module(name)
            except ImportError:  # an optional part that is not installed: its step says so itself
                continue

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shopseg-imports")
    s.pending["imports"] = pool.submit(load)
    pool.shutdown(wait=False)


def _imports_done(s: RunState) -> None:
    early = s.pending.pop("imports", None)
    if early is not None:
        early.result()


def _customers(s: RunState) -> None:
    if not s.customer_inputs:
        return
    from shopseg.features.customers import extend_quarantine, join_run_features, load_customer_table

    as_of = s.features.as_of if s.features is not None else s.config.features.as_of
    s.customers = load_customer_table(
        s.backend, s.customer_inputs, s.config.customers, as_of=as_of, alone=s.features is None, work=s.out / ".work"
    )
    s.notes += s.customers.ingest.notes
    s.notes += [f"customer feature {n} skipped: {why}" for n, why in s.customers.features.skipped.items()]
    s.features = join_run_features(s.customers, s.features)
    extend_quarantine(s.backend, s.customers)


def _segment_features(s: RunState) -> list[str]:
    assert s.features is not None
    wanted = s.config.segment.features
    if s.events_ingest is not None and "features" not in s.config.segment.model_fields_set:
        wanted, missing = default_segment_features(s.features.numeric, orders=s.ingest is not None)
        if missing and f"default segmentation features {missing} are not available" not in " ".join(s.notes):
            s.notes.append(f"default segmentation features {missing} are not available in this run; left out")
    extra = s.customers.segment_numeric if s.customers is not None else []  # [customers] segment_on
    if s.ingest is None and s.events_ingest is None and "features" not in s.config.segment.model_fields_set:
        return list(extra)  # a run on the customer table alone
    if wanted == ["all"]:
        return [f for f in s.features.numeric if f != "n_lines"]
    unknown = [f for f in wanted if f not in s.features.frame.columns]
    if unknown:
        raise ConfigError(
            f"segment.features names {unknown}, which this run does not have; available: {s.features.numeric}"
        )
    return [*wanted, *(f for f in extra if f not in wanted)]


def _segment(s: RunState) -> None:
    assert s.features is not None
    from shopseg.segment import segmenter_from_config

    c = s.config.segment
    # categorical customer attributes enter as weighted one-hot blocks (shopseg.segment.mixed)
    cat_weights = _customer_encoding(s)
    seg = segmenter_from_config(c, [*_segment_features(s), *cat_weights], weights=cat_weights).fit(s.features.frame)
    s.segmenter, s.labels = seg, seg.labels_
    if seg.selection_.warning:
        s.warnings.append(seg.selection_.warning)
    if seg.stability_ is not None and seg.stability_.unstable():
        s.warnings.append(f"Unstable segments: {seg.stability_.summary()}")
    dropped = seg.preprocessor_.dropped_
    if dropped:
        s.notes.append("segmentation features dropped: " + "; ".join(f"{f} ({why})" for f, why in dropped.items()))
    if s.customers is not None:
        from shopseg.features.customers import check_segments

        warning = check_segments(s.customers, s.features.frame, s.labels, s.config.customers)
        if warning:
            s.warnings.append(warning)


def _customer_encoding(s: RunState) -> dict[str, float]:
    if s.customers is None or s.features is None:
        return {}
    from shopseg.features.customers import encode_categoricals

    scaling = str(getattr(s.config.segment, "scaling", "standard"))  # the weights undo the segmenter's scaling
    return encode_categoricals(s.customers, s.features, s.config.customers, scaling)


def _profile(s: RunState) -> None:
    assert s.features is not None and s.labels is not None and s.segmenter is not None
    from shopseg.profile import profile_segments

    overrides = {k: v.model_dump(exclude_none=True) for k, v in s.config.profile.names.items()}
    given = getattr(s.segmenter, "segment_names_", None)  # names the algorithm gives itself (RFM, noise)
    s.profiles = profile_segments(
        s.features.frame, s.labels, s.features.numeric, overrides, notes=s.warnings, given=given
    )
    names = s.profiles.set_index("segment")
    frame = s.features.frame.drop(columns=s.customers.encoded if s.customers is not None else [])
    if s.customers is not None and s.customers.composition is not None:
        comp = s.customers.composition.copy()
        comp.insert(1, "segment_name", names.loc[comp["segment"], "name"].to_numpy())
        s.backend.create_table("segment_composition", comp)
    frame.insert(1, "segment", s.labels)
    frame.insert(2, "segment_name", names.loc[s.labels, "name"].to_numpy())
    frame.insert(3, "action", names.loc[s.labels, "action"].to_numpy())
    _segmenter_columns(s.segmenter, s.features.frame, frame, s.profiles)
    if s.config.clean.outliers == "flag" and s.clean is not None:
        frame["is_outlier"] = frame["customer_id"].isin(set(s.clean.outlier_customers))
    s.backend.create_table("segments", frame)
    s.backend.create_table("profiles", s.profiles)
    s.segmenter.save(
        s.out / "model",
        extra={"segments": s.profiles[["segment", "name", "action", "size"]].to_dict(orient="records")},
    )


def _segmenter_columns(
    seg: Segmenter, features: pd.DataFrame, frame: pd.DataFrame, profiles: pd.DataFrame | None = None
) -> None:
    """Add the segmenter's per-customer columns (RFM scores) and each segment's bootstrap stability
    (``stability`` = Jaccard, ``stable`` = at or above the threshold) to the CRM ``frame`` (and ``profiles``)."""
    extra = seg.customer_columns(features)
    if extra is not None:
        for c in extra.columns:
            frame[c] = extra[c].to_numpy()
    if seg.stability_ is not None:
        jac = pd.Series(seg.stability_.per_segment(), dtype="float64")
        frame["stability"] = frame["segment"].map(jac).astype("float64").to_numpy()
        frame["stable"] = (frame["stability"] >= seg.stability_.threshold).to_numpy()
        if profiles is not None:
            profiles["stability"] = profiles["segment"].map(jac).astype("float64")
            profiles["stable"] = profiles["stability"] >= seg.stability_.threshold


def _explain(s: RunState) -> None:
    assert s.features is not None and s.labels is not None and s.profiles is not None
    c = s.config.profile
    if c.rule_features == ["model"]:
        feats = _segment_features(s)
    elif c.rule_features == ["all"]:
        feats = [f for f in s.features.numeric if f != "n_lines"]
    else:
        unknown = [f for f in c.rule_features if f not in s.features.numeric]
        if unknown:
            raise ConfigError(
                f"profile.rule_features names {unknown}, which this run does not have; available: {s.features.numeric}"
            )
        feats = list(c.rule_features)
    frame = s.features.frame
    feats = [f for f in feats if f in frame.columns and pd.api.types.is_numeric_dtype(frame[f])]
    if not feats:
        s.notes.append("segment rules skipped: the segmentation uses no numeric feature to write rules on")
        return
    names = {int(r.segment): str(r.name) for r in s.profiles.itertuples()}
    from shopseg.profile import explain_segments

    s.rules = explain_segments(
        s.features.frame,
        s.labels,
        feats,
        names=names,
        max_depth=c.rule_depth,
        sample=c.rule_sample,
        seed=s.config.segment.seed,
    )
    s.rules.write(s.out / "segment_rules.json")
    s.backend.create_table("segment_rules", s.rules.table())
    s.files["segment_rules"] = "segment_rules.json"


def _recommend(s: RunState) -> None:
    assert s.features is not None and s.segmenter is not None
    rc = s.config.recommend
    if s.ingest is None:
        # no order lines: purchase events stand in for them (a view `transactions`), when they can
        why = purchases_as_transactions(s.backend, s.events_ingest)
        if why:
            s.notes.append(f"recommendations skipped: {why}")
            return
        s.notes.append("recommendations are made from purchase events (one order per order id, else per session)")
    elif not s.ingest.has_products:
        s.notes.append("recommendations skipped: the input has no product column")
        return
    from shopseg.recommend.methods import threads_for
    from shopseg.recommend.runner import prepare_interactions, run_recommendations

    cutoff = s.features.as_of - timedelta(days=rc.holdout_days)
    early = s.pending.pop("interactions", None)
    if early is not None:
        early.result()  # started after the features step (_start_interactions), bundles with it
    else:
        prepare_interactions(
            s.backend,
            as_of=s.features.as_of,
            holdout_days=rc.holdout_days if rc.evaluate else None,
            half_life_days=rc.half_life_days,
        )
    segment_of = _evaluation_segments(s, cutoff) if rc.evaluate else None
    out = run_recommendations(
        s.backend,
        rc=rc,
        as_of=s.features.as_of,
        seed=s.config.segment.seed,
        threads=threads_for(rc.threads, s.config.engine.threads),
        segment_of=segment_of,
        clean=s.config.clean,
        has_category=bool(rc.exclude_categories) and bool(s.backend.scalar("SELECT count(category) FROM transactions")),
        model_dir=s.out / "model",
        bundles_ready=early is not None,
    )
    s.notes += out.notes
    s.segment_products = out.segment_products
    s.rec_info = out.info
    s.rec_eval = out.evaluation.table_at("all", 10) if out.evaluation is not None else None


def _evaluation_segments(s: RunState, cutoff: datetime) -> str | None:
    """``ev_segment_of``: the customers the evaluation scores (purchases on both sides of the cut-off; a seeded
    sample of at most recommend.eval_users) with their segment as of the cut-off, assigned by the fitted model
    from features of the training period only. None (with a note) when there are none."""
    assert s.features is not None and s.segmenter is not None
    rc = s.config.recommend
    # segments as of the cut-off, assigned by the fitted model from features of the training period only, for
    # the customers the evaluation can use (purchases on both sides of the cut-off)
    c, a = (f"TIMESTAMP '{t:%Y-%m-%d %H:%M:%S}'" for t in (cutoff, s.features.as_of))
    s.backend.execute(
        "CREATE OR REPLACE TABLE ev_candidates AS "
        f"SELECT customer_id FROM transactions WHERE ts < {c} INTERSECT "
        f"SELECT customer_id FROM transactions WHERE ts >= {c} AND ts < {a}"
    )
    n_cand = int(s.backend.scalar("SELECT count(*) FROM ev_candidates"))
    if n_cand > rc.eval_users:
        # a seeded sample keeps the evaluation's cost bounded on large shops
        s.backend.execute(
            "CREATE OR REPLACE TABLE ev_candidates AS SELECT customer_id FROM ev_candidates "
            f"ORDER BY hash(customer_id || '{s.config.segment.seed}'), customer_id LIMIT {rc.eval_users}"
        )
        s.notes.append(
            f"recommendations evaluated on a seeded sample of {rc.eval_users:,} of the {n_cand:,} customers with "
            "purchases on both sides of the cut-off"
        )
    early = features_as_of(s.backend, cutoff, customers="ev_candidates", **_columns(s))
    if early.empty:
        s.notes.append(
            f"recommendation evaluation skipped: no customer bought both before and after the cut-off {cutoff:%Y-%m-%d}"
        )
        return None
    early["customer_id"] = early["customer_id"].astype(str)
    if s.customers is not None:  # attributes (and their encoding) are taken as they are now
        from shopseg.features.customers import with_customer_columns

        early = with_customer_columns(early, s.customers, s.features.frame)
    s.backend.create_table(
        "ev_segment_of",
        pd.DataFrame({"customer_id": early["customer_id"], "segment": s.segmenter.predict(early)}),
    )
    return "ev_segment_of"


def _insights(s: RunState) -> None:
    from shopseg.insights import compute_insights

    assert s.features is not None
    coupons = s.customers is not None and s.customers.clean.activity is not None
    if s.ingest is None and s.events_ingest is None and not (coupons and s.backend.has_table("coupons")):
        s.notes.append("shop insights skipped: the run has only a customer table without coupon activity")
        return
    rc = s.config.recommend
    s.insights = compute_insights(
        s.backend,
        as_of=s.features.as_of,
        holdout_days=rc.holdout_days,
        # the recommend step's interactions hold the same hold-out's pairs: no second pass over the lines
        interactions=rc.evaluate and bool(s.rec_info),
        burned_values=s.config.customers.burned_values,
    )
    s.insights.save(s.backend, s.out / "insights.json")
    s.files["insights"] = "insights.json"


def _banners(s: RunState) -> None:
    from shopseg.export import write_frame
    from shopseg.insights.banners import banner_table
    from shopseg.insights.impact import impact_table, segment_figures

    assert s.features is not None and s.profiles is not None
    names = {int(r.segment): str(r.name) for r in s.profiles.itertuples()}
    if s.config.banners.enabled:
        res = banner_table(s.backend, s.config.banners, seed=s.config.segment.seed, names=names)
        s.notes += res.notes
        if not res.table.empty:
            s.banners = res.table
            s.backend.create_table("banners", res.table)
            write_frame(res.table, s.out / "banners.csv")
            s.files["banners"] = "banners.csv"
    figures = segment_figures(s.backend, s.features.as_of)
    if figures.empty:
        s.notes.append("impact scenarios skipped: the run has no order values")
        return
    s.impact = impact_table(figures, s.config.impact)
    s.backend.create_table("segment_figures", figures)
    s.backend.create_table("impact", s.impact)


def _export(s: RunState) -> None:
    """The run's files, written on a second connection while the report step (mostly Python) runs; ``run``
    collects them (:func:`_collect`) before the manifest. The step's timing is the writing's own wall time."""
    cur = s.backend.cursor()

    def write() -> tuple[dict[str, str], float]:
        t0 = time.perf_counter()
        try:
            return write_run_files(cur, s.out), time.perf_counter() - t0
        finally:
            cur.close()

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shopseg-export")
    s.pending["export"] = pool.submit(write)
    pool.shutdown(wait=False)


def _collect(s: RunState) -> None:
    """Wait for work the steps left running (the export's files) and raise its error, if any."""
    job = s.pending.pop("export", None)
    if job is not None:
        files, seconds = job.result()
        s.files.update(files)
        s.timings["export"] = round(seconds, 3)


def _report(s: RunState) -> None:
    from shopseg.report import build_report

    build_report(s, s.out / "report.html")
    s.files["report"] = "report.html"


STEPS: tuple[Step, ...] = (
    Step("ingest", "read files, map columns", _ingest),
    Step("clean", "apply cleaning rules, reconcile", _clean),
    Step("features", "customer features in SQL", _features),
    Step("customers", "customer table: attributes, lookups, coupon features", _customers),
    Step("segment", "choose k, fit the segmenter", _segment),
    Step("profile", "profiles, names, actions", _profile),
    Step("explain", "segment rules (segment_rules.json)", _explain),
    Step("recommend", "recommendations and evaluation", _recommend),
    Step("insights", "shop insights: funnel, hours, devices, top categories", _insights),
    Step("banners", "banner economics and impact scenarios", _banners),
    Step("export", "CRM file, recommendations, quarantine", _export),
    Step("report", "report.html", _report),
)


@dataclass
class RunResult:
    """What a finished run returns: its folder, the key tables and the manifest."""

    out: Path
    segments: pd.DataFrame
    profiles: pd.DataFrame
    manifest: dict[str, Any]
    recommendation_evaluation: pd.DataFrame | None

    @property
    def report(self) -> Path:
        return self.out / "report.html"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("shopseg", "duckdb", "pandas", "numpy", "scikit-learn", "pyarrow", "plotly"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _prepare_out(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("shopseg.duckdb", "shopseg.duckdb.wal", ".work", ".tmp", "model", "spark-tables"):
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def run(
    inputs: Sequence[str | Path],
    out: str | Path,
    config: RunConfig | None = None,
    *,
    events: Sequence[str | Path] = (),
    customers: Sequence[str | Path] = (),
    progress: Progress | None = None,
    steps: Sequence[Step] = STEPS,
) -> RunResult:
    """Run the whole pipeline on ``inputs`` and write the run directory ``out``.

    ``inputs`` are order-line files, or any files whose role (orders, events, customers) is told by their
    columns; ``events`` and ``customers`` name event logs and customer tables explicitly.
    """
    config = config or RunConfig()
    out = Path(out)
    _prepare_out(out)
    backend = DuckDBBackend(
        out / "shopseg.duckdb", memory_limit=config.engine.memory_limit, threads=config.engine.threads
    )
    try:
        engine = open_engine(config.engine, out, backend)
    except ShopsegError:
        backend.close()
        raise
    state = RunState([str(i) for i in inputs], out, config, backend, engine=engine)
    state.event_inputs = [str(i) for i in events]
    state.customer_inputs = [str(i) for i in customers]
    state.step_names = tuple(step.name for step in steps)
    started = time.perf_counter()
    _prefetch_imports(state)
    try:
        for i, step in enumerate(steps):
            if progress:
                progress(step.name, i, len(steps))
            t0 = time.perf_counter()
            if step.name not in ("ingest", "clean", "features"):
                _imports_done(state)
            step.func(state)
            state.timings[step.name] = round(time.perf_counter() - t0, 3)
        _collect(state)
        if progress:
            progress("done", len(steps), len(steps))
        manifest = _manifest(state, time.perf_counter() - started)
        write_json(out / "manifest.json", manifest)
        segments = backend.df("SELECT * FROM segments ORDER BY customer_id")
    except ShopsegError:
        raise
    finally:
        # never close the database under a running query; work still pending here belongs to a step that never
        # ran (the run stopped before it), so its own error, if any, is not the run's
        for pending in state.pending.values():
            pending.exception()
        if engine is not backend:
            engine.close()
        backend.close()
        shutil.rmtree(out / ".work", ignore_errors=True)
        shutil.rmtree(out / ".tmp", ignore_errors=True)
    assert state.profiles is not None
    return RunResult(out, segments, state.profiles, manifest, state.rec_eval)


def _manifest(s: RunState, total: float) -> dict[str, Any]:
    assert s.features is not None and s.segmenter is not None
    inputs = []
    for role, ing in (("orders", s.ingest), ("events", s.events_ingest)):
        for f in ing.files if ing is not None else []:
            inputs.append({"path": str(f), "size": f.stat().st_size, "sha256": sha256(f), "role": role})
    sources = {name: c.as_dict() for name, c in (("orders", s.clean), ("events", s.events_clean)) if c is not None}
    main: Any = s.clean or s.events_clean
    if s.customers is not None:
        for f in s.customers.ingest.files:
            inputs.append({"path": str(f), "size": f.stat().st_size, "sha256": sha256(f), "role": "customers"})
        sources["customers"] = s.customers.clean.customers.as_dict()
        if s.customers.clean.activity is not None:
            sources["coupons"] = s.customers.clean.activity.as_dict()
        main = main or s.customers.clean.customers
    return {
        "customers_table": s.customers.summary() if s.customers is not None else None,
        "shopseg_run": 1,
        "created_by": "shopseg",
        "inputs": inputs,
        "ingest": s.ingest.summary() if s.ingest is not None else None,
        "events": {"ingest": s.events_ingest.summary(), "rows": sources["events"]}
        if s.events_ingest is not None
        else None,
        "config": s.config.model_dump(mode="json"),
        "as_of": s.features.as_of.isoformat(),
        "seed": s.config.segment.seed,
        "versions": _versions(),
        "rows": {
            **(main.as_dict() if main is not None else {}),
            "by_source": sources,
            "customers": len(s.features.frame),
            "recommendations": int(s.backend.scalar("SELECT count(*) FROM recommendations"))
            if s.backend.has_table("recommendations")
            else 0,
        },
        "segmentation": _segmentation_summary(s.segmenter, s.config.segment.algorithm),
        "recommendation_evaluation": {
            **s.rec_info,
            "table": s.rec_eval.to_dict(orient="records") if s.rec_eval is not None else None,
        },
        "files": s.files,
        "timings": {**s.timings, "total": round(total, 3)},
        "warnings": s.warnings,
        "notes": s.notes,
    }


def _segmentation_summary(seg: Segmenter, requested: str) -> dict[str, Any]:
    """The manifest's "segmentation" section: algorithm, k and why, how the model was fitted, stability."""
    from shopseg.segment.base import json_safe

    fit = seg.fit_info_
    out: dict[str, Any] = {
        "algorithm": seg.algorithm_,
        "requested": requested,
        "k": seg.k_,
        "features": seg.preprocessor_.features,
        "dropped_features": seg.preprocessor_.dropped_,
        "reason": seg.selection_.reason,
        "method": fit.get("method"),
        "warning": seg.selection_.warning,
    }
    if "auto" in fit:
        out["auto_reason"] = fit["auto"]
    if "ward" in fit:
        out["ward"] = fit["ward"]  # "exact" or "sampled"
        out["ward_fitted_on"] = fit.get("fitted_on")
    if seg.algorithm_ == "hdbscan":
        out["noise_share"] = seg.noise_share_
    if seg.stability_ is not None:
        out["stability"] = {
            "summary": seg.stability_.summary(),
            "per_k": seg.stability_.table.to_dict(orient="records"),
            "per_segment": seg.stability_.per_segment(),
            "unstable_segments": seg.stability_.unstable(),
        }
    return dict(json_safe(out))  # NaN (e.g. a segment too small for the stability sample) -> null


def score(
    model_dir: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    config: RunConfig | None = None,
) -> pd.DataFrame:
    """Assign segments to the customers in ``inputs`` with a saved model; writes ``out/segments.csv|parquet``."""
    from shopseg.export import write_frame

    config = config or RunConfig()
    out = Path(out)
    _prepare_out(out)
    frame = score_customers(model_dir, inputs, out / "shopseg.duckdb", config).frame
    write_frame(frame, out / "segments.csv")
    write_frame(frame, out / "segments.parquet")
    return frame


def score_customers(
    model_dir: str | Path,
    inputs: Sequence[str | Path],
    database: str | Path,
    config: RunConfig | None = None,
) -> ScoredCustomers:
    """Ingest, clean and build features for ``inputs`` in the DuckDB file ``database``, then assign segments
    with the saved model (a run's ``model/`` folder, or the run folder). Returns the feature frame with
    ``segment``, ``segment_name`` and ``action`` inserted after ``customer_id``, the as-of time used and the
    model's segment names."""
    model_dir = Path(model_dir)
    if (model_dir / "model" / "segmenter.json").is_file():
        model_dir = model_dir / "model"
    from shopseg.segment.base import load_segmenter

    seg, meta = load_segmenter(model_dir)
    config = config or RunConfig()
    database = Path(database)
    work = database.with_name(f".work-{database.stem}")
    backend = DuckDBBackend(database, memory_limit=config.engine.memory_limit, threads=config.engine.threads)
    try:
        ing = ingest_transactions(backend, [str(i) for i in inputs], config.input, work=work)
        clean_transactions(backend, ing, config.clean)
        fs = build_features(backend, config.features.as_of, present_columns=set(ing.mapping.source))
        labels = seg.predict(fs.frame)
    finally:
        backend.close()
        shutil.rmtree(work, ignore_errors=True)
    # names and actions the run saved with the model (profile step), else the ones the algorithm gave itself
    names = {int(s): str(v) for s, v in meta.get("segment_names", {}).items()}
    actions = {int(s): str(v) for s, v in meta.get("segment_actions", {}).items()}
    for r in meta.get("segments", []):
        names[int(r["segment"])] = str(r.get("name", f"Segment {r['segment']}"))
        actions[int(r["segment"])] = str(r.get("action", ""))
    frame = fs.frame.copy()
    frame.insert(1, "segment", labels)
    frame.insert(2, "segment_name", [names.get(int(x), f"Segment {x}") for x in labels])
    frame.insert(3, "action", [actions.get(int(x), "") for x in labels])
    _segmenter_columns(seg, fs.frame, frame)
    segments = {s: f"Segment {s}" for s in range(int(meta.get("k", 0)))} | names
    return ScoredCustomers(frame, fs.as_of, dict(sorted(segments.items())))


@dataclass
class ScoredCustomers:
    """What :func:`score_customers` returns."""

    frame: pd.DataFrame
    as_of: datetime
    segments: dict[int, str]
