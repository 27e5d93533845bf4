"""The pipeline as a list of steps, the run directory and its manifest.

``run()`` is what the CLI, the API and the tests call. Each step is a small function of the run state,
listed by name in ``STEPS``; the manifest records each step's wall time.
"""

from __future__ import annotations

import logging
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shopseg.backends.duckdb import DuckDBBackend
from shopseg.clean import CleanResult, clean_transactions
from shopseg.config import RunConfig
from shopseg.errors import ConfigError, DataError, ShopsegError
from shopseg.export import sha256, write_json, write_run_files
from shopseg.features import FeatureSet, build_features, feature_sql
from shopseg.ingest import IngestResult, ingest_transactions
from shopseg.profile import profile_segments
from shopseg.recommend import evaluate, recommend_all, segment_top_products
from shopseg.segment import KMeansSegmenter

__all__ = ["STEPS", "RunResult", "Step", "run", "score"]

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
    segmenter: KMeansSegmenter | None = None
    labels: np.ndarray | None = None
    profiles: pd.DataFrame | None = None
    segment_products: pd.DataFrame | None = None
    rec_eval: pd.DataFrame | None = None
    rec_info: dict[str, Any] = field(default_factory=dict)
    rebuy_threshold: float | None = None
    files: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Step:
    name: str
    description: str
    func: Callable[[RunState], None]


def _ingest(s: RunState) -> None:
    s.ingest = ingest_transactions(s.backend, s.inputs, s.config.input, work=s.out / ".work")
    s.notes += s.ingest.notes


def _clean(s: RunState) -> None:
    assert s.ingest is not None
    s.clean = clean_transactions(s.backend, s.ingest, s.config.clean)
    if s.clean.clean_rows == 0:
        top = s.clean.reconciliation.sort_values("rows", ascending=False).iloc[0]
        raise DataError(
            f"no rows are left after cleaning: all {s.clean.input_rows} were quarantined (mostly "
            f"'{top['code']}': {top['description']}); see {s.out / 'quarantine.parquet'} once written"
        )


def _features(s: RunState) -> None:
    assert s.ingest is not None
    s.features = build_features(s.backend, s.config.features.as_of, present_columns=set(s.ingest.mapping.source))
    for name, why in s.features.skipped.items():
        s.notes.append(f"feature {name} skipped: {why}")


def _segment_features(s: RunState) -> list[str]:
    assert s.features is not None
    wanted = s.config.segment.features
    if wanted == ["all"]:
        return [f for f in s.features.numeric if f != "n_lines"]
    unknown = [f for f in wanted if f not in s.features.frame.columns]
    if unknown:
        raise ConfigError(
            f"segment.features names {unknown}, which this run does not have; available: {s.features.numeric}"
        )
    return list(wanted)


def _segment(s: RunState) -> None:
    assert s.features is not None
    c = s.config.segment
    seg = KMeansSegmenter(
        _segment_features(s),
        k=c.k,
        k_min=c.k_min,
        k_max=c.k_max,
        n_init=c.n_init,
        seed=c.seed,
        silhouette_sample=c.silhouette_sample,
        selection_sample=c.selection_sample,
    ).fit(s.features.frame)
    s.segmenter, s.labels = seg, seg.labels_
    if seg.selection_.warning:
        s.warnings.append(seg.selection_.warning)


def _profile(s: RunState) -> None:
    assert s.features is not None and s.labels is not None and s.segmenter is not None
    s.profiles = profile_segments(s.features.frame, s.labels, s.features.numeric)
    names = s.profiles.set_index("segment")
    frame = s.features.frame.copy()
    frame.insert(1, "segment", s.labels)
    frame.insert(2, "segment_name", names.loc[s.labels, "name"].to_numpy())
    frame.insert(3, "action", names.loc[s.labels, "action"].to_numpy())
    if s.config.clean.outliers == "flag":
        assert s.clean is not None
        frame["is_outlier"] = frame["customer_id"].isin(set(s.clean.outlier_customers))
    s.backend.create_table("segments", frame)
    s.backend.create_table("profiles", s.profiles)
    s.segmenter.save(
        s.out / "model",
        extra={"segments": s.profiles[["segment", "name", "action", "size"]].to_dict(orient="records")},
    )


def _recommend(s: RunState) -> None:
    assert s.ingest is not None and s.features is not None and s.segmenter is not None
    rc = s.config.recommend
    if not s.ingest.has_products:
        s.notes.append("recommendations skipped: the input has no product column")
        return
    cutoff = s.features.as_of - timedelta(days=rc.holdout_days)
    s.rebuy_threshold = recommend_all(
        s.backend, n=rc.n, threshold=rc.rebuy_threshold, cutoff=cutoff if rc.evaluate else None
    )
    s.segment_products = segment_top_products(s.backend, rc.segment_top_n)
    if not rc.evaluate:
        return
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
    early = s.backend.df(feature_sql(cutoff, customers="ev_candidates"))
    if early.empty:
        s.notes.append(
            f"recommendation evaluation skipped: no customer bought both before and after the cut-off {cutoff:%Y-%m-%d}"
        )
        return
    early["customer_id"] = early["customer_id"].astype(str)
    s.backend.create_table(
        "ev_segment_of",
        pd.DataFrame({"customer_id": early["customer_id"], "segment": s.segmenter.predict(early)}),
    )
    table, info = evaluate(
        s.backend,
        as_of=s.features.as_of,
        holdout_days=rc.holdout_days,
        n=rc.n,
        threshold=rc.rebuy_threshold,
        segment_of="ev_segment_of",
    )
    s.rec_eval, s.rec_info = table, info
    s.backend.create_table("recommendation_evaluation", table)


def _export(s: RunState) -> None:
    s.files.update(write_run_files(s.backend, s.out))


def _report(s: RunState) -> None:
    from shopseg.report import build_report

    build_report(s, s.out / "report.html")
    s.files["report"] = "report.html"


STEPS: tuple[Step, ...] = (
    Step("ingest", "read files, map columns", _ingest),
    Step("clean", "apply cleaning rules, reconcile", _clean),
    Step("features", "customer features in SQL", _features),
    Step("segment", "choose k, fit K-Means", _segment),
    Step("profile", "profiles, names, actions", _profile),
    Step("recommend", "recommendations and evaluation", _recommend),
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
    for name in ("shopseg.duckdb", "shopseg.duckdb.wal", ".work", ".tmp", "model"):
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
    progress: Progress | None = None,
    steps: Sequence[Step] = STEPS,
) -> RunResult:
    """Run the whole pipeline on ``inputs`` and write the run directory ``out``."""
    config = config or RunConfig()
    out = Path(out)
    _prepare_out(out)
    backend = DuckDBBackend(
        out / "shopseg.duckdb", memory_limit=config.engine.memory_limit, threads=config.engine.threads
    )
    state = RunState([str(i) for i in inputs], out, config, backend)
    started = time.perf_counter()
    try:
        for i, step in enumerate(steps):
            if progress:
                progress(step.name, i, len(steps))
            t0 = time.perf_counter()
            step.func(state)
            state.timings[step.name] = round(time.perf_counter() - t0, 3)
        if progress:
            progress("done", len(steps), len(steps))
        manifest = _manifest(state, time.perf_counter() - started)
        write_json(out / "manifest.json", manifest)
        segments = backend.df("SELECT * FROM segments ORDER BY customer_id")
    except ShopsegError:
        raise
    finally:
        backend.close()
        shutil.rmtree(out / ".work", ignore_errors=True)
        shutil.rmtree(out / ".tmp", ignore_errors=True)
    assert state.profiles is not None
    return RunResult(out, segments, state.profiles, manifest, state.rec_eval)


def _manifest(s: RunState, total: float) -> dict[str, Any]:
    assert s.ingest is not None and s.clean is not None and s.features is not None and s.segmenter is not None
    inputs = []
    for f in s.ingest.files:
        inputs.append({"path": str(f), "size": f.stat().st_size, "sha256": sha256(f)})
    return {
        "shopseg_run": 1,
        "created_by": "shopseg",
        "inputs": inputs,
        "ingest": s.ingest.summary(),
        "config": s.config.model_dump(mode="json"),
        "as_of": s.features.as_of.isoformat(),
        "seed": s.config.segment.seed,
        "versions": _versions(),
        "rows": {
            **s.clean.as_dict(),
            "customers": len(s.features.frame),
            "recommendations": int(s.backend.scalar("SELECT count(*) FROM recommendations"))
            if s.backend.has_table("recommendations")
            else 0,
        },
        "segmentation": {
            "algorithm": "kmeans",
            "k": s.segmenter.k_,
            "features": s.segmenter.preprocessor_.features,
            "reason": s.segmenter.selection_.reason,
        },
        "recommendation_evaluation": {
            **s.rec_info,
            "table": s.rec_eval.to_dict(orient="records") if s.rec_eval is not None else None,
        },
        "files": s.files,
        "timings": {**s.timings, "total": round(total, 3)},
        "warnings": s.warnings,
        "notes": s.notes,
    }


def score(
    model_dir: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    config: RunConfig | None = None,
) -> pd.DataFrame:
    """Assign segments to the customers in ``inputs`` with a saved model; writes ``out/segments.csv|parquet``."""
    from shopseg.export import write_frame

    seg, meta = KMeansSegmenter.load(model_dir)
    config = config or RunConfig()
    out = Path(out)
    _prepare_out(out)
    backend = DuckDBBackend(
        out / "shopseg.duckdb", memory_limit=config.engine.memory_limit, threads=config.engine.threads
    )
    try:
        ing = ingest_transactions(backend, [str(i) for i in inputs], config.input, work=out / ".work")
        clean_transactions(backend, ing, config.clean)
        fs = build_features(backend, config.features.as_of, present_columns=set(ing.mapping.source))
        labels = seg.predict(fs.frame)
    finally:
        backend.close()
        shutil.rmtree(out / ".work", ignore_errors=True)
    names = {int(r["segment"]): r for r in meta.get("segments", [])}
    frame = fs.frame.copy()
    frame.insert(1, "segment", labels)
    frame.insert(2, "segment_name", [names.get(int(x), {}).get("name", f"Segment {x}") for x in labels])
    frame.insert(3, "action", [names.get(int(x), {}).get("action", "") for x in labels])
    write_frame(frame, out / "segments.csv")
    write_frame(frame, out / "segments.parquet")
    return frame
