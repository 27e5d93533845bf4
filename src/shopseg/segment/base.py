"""One Segmenter interface for every algorithm, its persistence, and the factory.

Every segmenter follows the scikit-learn estimator contract: ``__init__`` stores parameters unchanged,
``fit(frame)`` preprocesses the features, chooses k (unless the algorithm finds k itself or k is forced), fits
the final model on everyone, numbers the segments by size (0 = largest; -1 = noise, "unassigned"), measures
bootstrap stability and returns ``self``. ``predict(frame)`` works from a saved model alone.

A subclass supplies the algorithm through a few hooks on the preprocessed matrix ``x``:

* ``_cluster_all(x, ks, seed)``: labels for every candidate k (used by k selection and the gap statistic);
* ``_fit_final(x, k)``: the final model (its arrays go into ``state_``), returning the raw labels;
* ``_assign(x)``: labels of new customers from ``state_`` alone;
* ``_resample_labels(x_fit, ks, seed, x_eval)``: fit on a resample, label ``x_eval`` (stability).

Models are saved as ``segmenter.json`` plus one ``.npy`` per array (``centers.npy`` …), never pickle.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar, cast

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import ThreadpoolController

from shopseg.errors import ConfigError, DataError, NotFittedError
from shopseg.segment.preprocess import Preprocessor
from shopseg.segment.select import Selection, choose_k, evaluate_labels, gap_statistic, single_k_selection

if TYPE_CHECKING:
    from shopseg.config import SegmentConfig
    from shopseg.segment.stability import Stability

FORMAT_VERSION = 2
#: Label of customers an algorithm leaves out of every segment (HDBSCAN noise).
NOISE = -1
NOISE_NAME = "unassigned"

ALGORITHMS: tuple[str, ...] = ("kmeans", "minibatch", "ward", "gmm", "hdbscan", "rfm", "auto")
_REGISTRY: dict[str, type[Segmenter]] = {}


_S = TypeVar("_S", bound="type[Segmenter]")


def register(cls: _S) -> _S:
    """Class decorator: make ``cls`` available to :func:`make_segmenter` and :func:`load_segmenter`."""
    _REGISTRY[cls.algorithm] = cls
    return cls


_controller: tuple[int, ThreadpoolController] | None = None


def _threadpools() -> ThreadpoolController:
    """The process's thread pools (OpenMP, BLAS), found once and found again only when modules were imported
    since: ``threadpool_limits`` rescans every loaded library on each call (~5 ms, which was most of the CPU of
    scoring one customer), a kept controller sets the limits in ~0.03 ms. A native library comes with an import,
    so an unchanged ``sys.modules`` means no new pool to miss."""
    global _controller
    n = len(sys.modules)
    if _controller is None or _controller[0] != n:
        _controller = (n, ThreadpoolController())
    return _controller[1]


@contextmanager
def one_thread() -> Iterator[None]:
    """One OpenMP thread in the calling thread (worker threads of the segmentation: OpenMP's thread count is per
    thread, so :func:`compute_limits` in the main thread does not reach them), with scikit-learn's parameter
    validation skipped: the many small internal fits (stability, gap references) pass arrays made here, finite
    by construction, and the checks were a quarter of each fit's cost."""
    import sklearn

    with (
        _threadpools().limit(limits=1, user_api="openmp"),
        sklearn.config_context(assume_finite=True, skip_parameter_validation=True),
    ):
        yield


@contextmanager
def compute_limits() -> Iterator[None]:
    """One thread for OpenMP and BLAS, and scikit-learn's convergence warnings recorded rather than raised.

    scikit-learn's OpenMP threads busy-wait; beside DuckDB's pool on a small machine that made a 4,000-customer
    fit 10x slower (measured: 21 s vs 2.3 s for k = 2..10). One thread is faster here.
    """
    with _threadpools().limit(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


# ------------------------------------------------------------------------------------------------ parameters
# Constraints as data: name -> (check, expected). One template words every error.
_CONSTRAINTS: dict[str, tuple[Any, str]] = {
    "k": (lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1 or None"),
    "k_min": (lambda v: isinstance(v, int) and v >= 2, "an integer >= 2"),
    "k_max": (lambda v: isinstance(v, int) and v >= 2, "an integer >= 2"),
    "seed": (lambda v: isinstance(v, int) and v >= 0, "a non-negative integer"),
    "silhouette_sample": (lambda v: isinstance(v, int) and v >= 10, "an integer >= 10"),
    "selection_sample": (lambda v: isinstance(v, int) and v >= 10, "an integer >= 10"),
    "gap_references": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0 = no gap statistic)"),
    "gap_sample": (lambda v: isinstance(v, int) and v >= 10, "an integer >= 10"),
    "stability_resamples": (lambda v: isinstance(v, int) and v >= 0, "an integer >= 0 (0 = no stability)"),
    "stability_sample": (lambda v: isinstance(v, int) and v >= 10, "an integer >= 10"),
    "stability_threshold": (lambda v: isinstance(v, int | float) and 0 < v <= 1, "a number in (0, 1]"),
    "n_init": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "minibatch_threshold": (lambda v: isinstance(v, int) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: isinstance(v, int) and v >= 16, "an integer >= 16"),
    "exact_limit": (lambda v: isinstance(v, int) and v >= 2, "an integer >= 2"),
    "fit_sample": (lambda v: isinstance(v, int) and v >= 10, "an integer >= 10"),
    "min_cluster_size": (lambda v: v is None or (isinstance(v, int) and v >= 2), "an integer >= 2 or None"),
    "min_samples": (lambda v: v is None or (isinstance(v, int) and v >= 1), "an integer >= 1 or None"),
    "covariance_type": (lambda v: v in ("full", "tied", "diag", "spherical"), "full, tied, diag or spherical"),
    "reg_covar": (lambda v: isinstance(v, int | float) and v >= 0, "a non-negative number"),
}


def _check_params(params: dict[str, Any], algorithm: str) -> None:
    for name, value in params.items():
        rule = _CONSTRAINTS.get(name)
        if rule is not None and not rule[0](value):
            raise ConfigError(f"{algorithm} segmenter: {name} must be {rule[1]}, got {value!r}")
    if params.get("k_min", 2) > params.get("k_max", 10):
        raise ConfigError(
            f"{algorithm} segmenter: k_min ({params['k_min']}) is above k_max ({params['k_max']}); "
            "lower k_min or raise k_max"
        )


# ------------------------------------------------------------------------------------------------ helpers
def nearest_centre(x: np.ndarray, centers: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean, computed exactly row by row, in chunks)."""
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        xc = x[s : s + chunk]
        d = np.empty((len(xc), len(centers)))
        for j, c in enumerate(centers):
            diff = xc - c
            d[:, j] = np.einsum("ij,ij->i", diff, diff)
        out[s : s + chunk] = d.argmin(axis=1) if len(centers) else 0
    return out


def segment_means(x: np.ndarray, labels: np.ndarray, n_slots: int) -> np.ndarray:
    """Mean of ``x`` per label 0..n_slots-1 (NaN rows for empty labels; noise left out)."""
    keep = labels >= 0
    counts = np.bincount(labels[keep], minlength=n_slots).astype(float)
    sums = np.zeros((n_slots, x.shape[1]))
    np.add.at(sums, labels[keep], x[keep])
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = sums / counts[:, None]
    return out


def seeded_sample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of ``size`` of ``n`` (all of them when ``size >= n``)."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def json_safe(o: Any) -> Any:
    """NaN/inf become null and numpy scalars plain numbers, so the JSON is strict (``allow_nan=False``)."""
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [json_safe(v) for v in o]
    if isinstance(o, np.ndarray):
        return json_safe(o.tolist())
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, float | np.floating):
        f = float(o)
        return f if math.isfinite(f) else None
    return o


class _Clock:
    """Wall time of each fitting phase (``timings_``; not saved with the model, which must be deterministic)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._t, 3)
        self._t = now


# ------------------------------------------------------------------------------------------------ the interface
class Segmenter:
    """Base of every segmentation algorithm (see the module docstring for the contract).

    Common parameters: ``features``; ``k`` (force k), ``k_min``/``k_max`` (candidates); ``seed``;
    ``silhouette_sample`` and ``selection_sample`` (seeded samples for the indices and the k sweep);
    ``gap_references``/``gap_sample`` (gap statistic; 0 references = off); ``stability_resamples`` (0 = off),
    ``stability_sample``, ``stability_threshold`` (segments below it are flagged unstable); preprocessing:
    ``skew``, ``scaling``, ``pca``, ``weights``, ``drop_correlated``.

    Fitted attributes: ``preprocessor_``, ``state_`` (the model's arrays), ``labels_``, ``k_``, ``selection_``,
    ``stability_``, ``fit_info_`` (how the model was fitted, in words and numbers), ``noise_share_``,
    ``segment_names_`` (names the algorithm gives itself: RFM segments, "unassigned").
    """

    algorithm: ClassVar[str] = ""
    #: Human description for reports.
    label: ClassVar[str] = ""
    #: False for algorithms that find k themselves (HDBSCAN, RFM).
    chooses_k: ClassVar[bool] = True
    #: True when ``predict`` on the training data gives ``labels_`` exactly.
    exact_predict: ClassVar[bool] = True
    #: "bootstrap" (with replacement) or "subsample" (80 % without replacement, for density-based methods).
    resampling: ClassVar[str] = "bootstrap"

    preprocessor_: Preprocessor
    state_: dict[str, np.ndarray]
    labels_: np.ndarray
    k_: int
    selection_: Selection
    stability_: Stability | None
    fit_info_: dict[str, Any]
    noise_share_: float
    segment_names_: dict[int, str]
    segment_actions_: dict[int, str]
    n_fit_: int
    timings_: dict[str, float]

    def __init__(
        self,
        features: list[str],
        *,
        k: int | None = None,
        k_min: int = 2,
        k_max: int = 10,
        seed: int = 0,
        silhouette_sample: int = 5_000,
        selection_sample: int = 20_000,
        gap_references: int = 10,
        gap_sample: int = 1_000,
        stability_resamples: int = 20,
        stability_sample: int = 2_000,
        stability_threshold: float = 0.6,
        skew: str = "log1p",
        scaling: str = "standard",
        pca: float | None = None,
        weights: dict[str, float] | None = None,
        drop_correlated: float | None = 0.95,
    ) -> None:
        self.features = features
        self.k = k
        self.k_min = k_min
        self.k_max = k_max
        self.seed = seed
        self.silhouette_sample = silhouette_sample
        self.selection_sample = selection_sample
        self.gap_references = gap_references
        self.gap_sample = gap_sample
        self.stability_resamples = stability_resamples
        self.stability_sample = stability_sample
        self.stability_threshold = stability_threshold
        self.skew = skew
        self.scaling = scaling
        self.pca = pca
        self.weights = weights
        self.drop_correlated = drop_correlated

    # ------------------------------------------------------------------------------------------ parameters
    @classmethod
    def param_names(cls) -> list[str]:
        """Every parameter ``__init__`` accepts, along the class hierarchy (scikit-learn's get_params idea)."""
        names: list[str] = []
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or klass is object:
                continue
            for p in inspect.signature(init).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names:
                    names.append(p.name)
        return names

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names()}

    @property
    def algorithm_(self) -> str:
        """The algorithm that made the fitted model (for ``auto``, the one it chose)."""
        return self.algorithm

    # ------------------------------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame) -> Self:
        _check_params(self.get_params(), self.algorithm)
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"fit expects a pandas DataFrame of customer features, got {type(frame).__name__}")
        with compute_limits():
            self._fit(frame)
        return self

    def _make_preprocessor(self) -> Preprocessor:
        return Preprocessor(
            list(self.features),
            skew=self.skew,
            scaling=self.scaling,
            pca=self.pca,
            weights=self.weights,
            drop_correlated=self.drop_correlated,
            seed=self.seed,
        )

    def _fit(self, frame: pd.DataFrame) -> None:
        from shopseg.segment.stability import bootstrap_stability

        clock = _Clock()
        self.timings_ = clock.laps
        self.preprocessor_ = self._make_preprocessor().fit(frame)
        x = self.preprocessor_.transform(frame)
        clock.lap("preprocess")
        n = len(x)
        if n < 2:
            raise DataError(f"need at least 2 customers to segment, got {n}")
        self.n_fit_ = n
        self.fit_info_ = {"customers": n}
        self.segment_names_, self.segment_actions_ = {}, {}
        sel_idx = seeded_sample(n, self.selection_sample, self.seed)
        sel = x if len(sel_idx) == n else x[sel_idx]
        ks: list[int] = []
        if self.chooses_k:
            self.selection_, ks = self._select(sel)
            k: int | None = max(1, min(self.selection_.chosen, n))
            clock.lap("select_k")
        else:
            k = None
        raw = self._fit_final(x, k)
        labels = self._order(x, raw)
        if self.exact_predict:
            labels = self._assign(x)
        self.labels_ = labels
        self.k_ = len(np.unique(labels[labels >= 0]))
        self.noise_share_ = float((labels < 0).mean())
        clock.lap("final_fit")
        if not self.chooses_k:
            self.selection_ = self._single_selection(sel, labels[sel_idx])
            ks = [self.k_]
            clock.lap("indices")
        if self.k_ not in ks:
            ks = sorted([*ks, self.k_])
        self.stability_ = (
            bootstrap_stability(
                self,
                x,
                labels,
                [k_ for k_ in ks if k_ >= 1],
                resamples=self.stability_resamples,
                sample=self.stability_sample,
                threshold=self.stability_threshold,
                seed=self.seed,
                workers=min(2, os.cpu_count() or 1),
            )
            if self.stability_resamples > 0 and self.k_ >= 1
            else None
        )
        clock.lap("stability")

    def _select(self, sel: np.ndarray) -> tuple[Selection, list[int]]:
        n_distinct = len(np.unique(sel, axis=0))
        ks = [k for k in range(self.k_min, min(self.k_max, n_distinct - 1) + 1) if k < len(sel)]
        if not ks:
            table = pd.DataFrame(columns=["k", "inertia", "silhouette", "calinski_harabasz", "davies_bouldin"])
            forced = self.k is not None
            chosen = self.k if self.k is not None else max(1, min(n_distinct, self.k_min))
            reason = f"too few distinct customers ({n_distinct}) to compare k; k={chosen}"
            return Selection(table, chosen, chosen, reason, forced, None), []
        gap: Future[pd.DataFrame] | None = None
        pool: ThreadPoolExecutor | None = None
        if self.gap_references > 0 and len(ks) > 1:
            # the gap statistic's reference fits need only the sample: on a second core beside the candidates and
            # the indices (the fits release the interpreter lock in their compiled loops; seeded, so the result
            # does not depend on the timing)
            gidx = seeded_sample(len(sel), self.gap_sample, self.seed + 1)
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shopseg-gap")
            gap = pool.submit(self._gap, sel[gidx], ks)
        try:
            labels, extra = self._candidates(sel, ks)
            table = evaluate_labels(
                self._index_space(sel), labels, silhouette_sample=self.silhouette_sample, seed=self.seed
            )
            for col in sorted({c for row in extra.values() for c in row}):
                table[col] = [extra[k].get(col, np.nan) for k in table["k"]]
            if gap is not None:
                table = table.merge(gap.result(), on="k", how="left")
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        return choose_k(table, forced=self.k), ks

    def _gap(self, x: np.ndarray, ks: list[int]) -> pd.DataFrame:
        # OpenMP's thread count is per thread: this worker would otherwise start a team of its own
        with one_thread():
            return gap_statistic(x, ks, self._cluster_quick, references=self.gap_references, seed=self.seed)

    def _single_selection(self, sel: np.ndarray, labels: np.ndarray) -> Selection:
        k = len(np.unique(labels[labels >= 0]))
        table = evaluate_labels(
            self._index_space(sel), {k: labels}, silhouette_sample=self.silhouette_sample, seed=self.seed
        )
        return single_k_selection(table, self.k_, self._k_reason())

    def _k_reason(self) -> str:
        return f"k={self.k_} found by the algorithm"

    def _index_space(self, x: np.ndarray) -> np.ndarray:
        """The space the selection indices are computed in (the model's space, unless overridden)."""
        return x

    def _order(self, x: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Renumber segments by size (0 = largest; ties by the centre's coordinates; empty slots last in slot
        order); noise stays -1. Permutes the model's arrays to match."""
        raw = np.asarray(raw, dtype=np.int64)
        slots = self._n_slots(raw)
        sizes = np.bincount(raw[raw >= 0], minlength=slots)
        means = segment_means(x, raw, slots)
        order = sorted(
            range(slots),
            key=lambda c: (-int(sizes[c]), tuple(np.round(means[c], 9)) if sizes[c] else (float(c),)),
        )
        remap = np.empty(slots, dtype=np.int64)
        remap[order] = np.arange(slots)
        self._permute(np.asarray(order, dtype=np.int64), remap)
        if "centers" not in self.state_:
            self.state_["centers"] = means[order]
        if slots == 0:
            return np.full(len(raw), NOISE, dtype=np.int64)
        labels: np.ndarray = np.where(raw >= 0, remap[np.maximum(raw, 0)], NOISE)
        return labels

    def _n_slots(self, raw: np.ndarray) -> int:
        return int(raw.max()) + 1 if (raw >= 0).any() else 0

    def _permute(self, order: np.ndarray, remap: np.ndarray) -> None:
        """Reorder the per-segment arrays so that new label i is old slot ``order[i]``."""
        for name in self._per_segment_arrays():
            self.state_[name] = self.state_[name][order]

    def _per_segment_arrays(self) -> list[str]:
        return [n for n in ("centers",) if n in self.state_]

    # ------------------------------------------------------------------------------------------ hooks
    def _candidates(self, sel: np.ndarray, ks: list[int]) -> tuple[dict[int, np.ndarray], dict[int, dict[str, float]]]:
        """Labels of the selection sample per candidate k, and extra per-k columns (e.g. BIC)."""
        return self._cluster_all(sel, ks, self.seed), {}

    def _cluster_all(self, x: np.ndarray, ks: list[int], seed: int) -> dict[int, np.ndarray]:
        raise NotImplementedError

    def _cluster_quick(self, x: np.ndarray, ks: list[int], seed: int) -> dict[int, np.ndarray]:
        """A cheaper ``_cluster_all`` for the gap statistic's data and reference sets (same for both)."""
        return self._cluster_all(x, ks, seed)

    def _fit_final(self, x: np.ndarray, k: int | None) -> np.ndarray:
        raise NotImplementedError

    def _assign(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _resample_labels(
        self, x_fit: np.ndarray, ks: list[int], seed: int, x_eval: np.ndarray
    ) -> dict[int, np.ndarray]:
        """Fit on a resample, label ``x_eval``: by default cluster, then nearest segment mean."""
        out = {}
        for k, labels in self._cluster_all(x_fit, ks, seed).items():
            out[k] = nearest_centre(x_eval, segment_means(x_fit, labels, int(labels.max()) + 1))
        return out

    # ------------------------------------------------------------------------------------------ predict
    def _check(self) -> None:
        if not hasattr(self, "state_"):
            raise NotFittedError("this segmenter is not fitted yet; call fit() or load a saved model")

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The preprocessed feature matrix the model works in."""
        self._check()
        return self.preprocessor_.transform(frame)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Segment of each customer in ``frame`` (works from a saved model alone; -1 = unassigned)."""
        x = self.transform(frame)
        with compute_limits():
            labels: np.ndarray = np.asarray(self._assign(x), dtype=np.int64)
        return labels

    def customer_columns(self, frame: pd.DataFrame) -> pd.DataFrame | None:
        """Extra per-customer columns for the CRM file (RFM scores); None for most algorithms."""
        return None

    @property
    def centers_(self) -> np.ndarray:
        """Segment centres in the model's (preprocessed) space, one row per label."""
        self._check()
        return self.state_["centers"]

    # ------------------------------------------------------------------------------------------ persistence
    def _state_json(self) -> dict[str, Any]:
        """Small fitted values saved in the JSON (arrays go to .npy files)."""
        return {}

    def _load_state_json(self, state: dict[str, Any]) -> None:
        """Inverse of ``_state_json``."""

    def to_dict(self) -> dict[str, Any]:
        self._check()
        return cast(
            dict[str, Any],
            json_safe(
                {
                    "format_version": FORMAT_VERSION,
                    "algorithm": self.algorithm_,
                    "params": self.get_params(),
                    "k": self.k_,
                    "customers": self.n_fit_,
                    "noise_share": self.noise_share_,
                    "fit": self.fit_info_,
                    "state": self._state_json(),
                    "preprocessing": self.preprocessor_.to_dict(),
                    "selection": self.selection_.to_dict(),
                    "stability": self.stability_.to_dict() if self.stability_ is not None else None,
                    "segment_names": {str(k): v for k, v in self.segment_names_.items()},
                    "segment_actions": {str(k): v for k, v in self.segment_actions_.items()},
                    "arrays": sorted(self.state_),
                }
            ),
        )

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> None:
        """Write ``segmenter.json`` and one ``.npy`` per array (temp file + rename; the JSON last)."""
        self._check()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays = dict(self.state_) | {f"preprocess_{k}": v for k, v in self.preprocessor_.arrays().items()}
        for name, arr in arrays.items():
            tmp = d / f"{name}.tmp.npy"
            np.save(tmp, np.asarray(arr), allow_pickle=False)
            tmp.replace(d / f"{name}.npy")
        payload = self.to_dict() | json_safe(extra or {})
        tmp_json = d / "segmenter.json.tmp"
        tmp_json.write_text(json.dumps(payload, indent=2, allow_nan=False), encoding="utf-8")
        tmp_json.replace(d / "segmenter.json")

    @classmethod
    def load(cls, directory: str | Path) -> tuple[Self, dict[str, Any]]:
        """Read a saved model; on the base class (or :func:`load_segmenter`) any algorithm, on a subclass only
        its own. Returns the segmenter and the saved JSON (with anything passed as ``extra`` to ``save``)."""
        d = Path(directory)
        meta_path = d / "segmenter.json"
        if not meta_path.is_file():
            raise NotFittedError(f"no saved model in '{d}' (segmenter.json missing); pass a run's model/ folder")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise NotFittedError(f"'{meta_path}' is not a readable shopseg model: {exc}") from None
        version, algo = meta.get("format_version"), meta.get("algorithm")
        _import_algorithms()
        if version not in (1, FORMAT_VERSION) or algo not in _REGISTRY:
            raise NotFittedError(
                f"'{meta_path}' is not a shopseg model this version can read (format {version!r}, algorithm "
                f"{algo!r}); known algorithms: {sorted(_REGISTRY)}"
            )
        target = _REGISTRY[algo]
        if cls.algorithm and not issubclass(target, cls):
            raise NotFittedError(
                f"'{meta_path}' is a {algo} model, not {cls.algorithm}; load it with shopseg.segment.load_segmenter"
            )
        if version == 1:
            meta = _upgrade_v1(meta)
        params = dict(meta["params"])
        features = params.pop("features")
        accepted = set(target.param_names())
        seg = target(features, **{k: v for k, v in params.items() if k in accepted})
        arrays = {}
        for name in meta.get("arrays", []):
            arrays[name] = _load_array(d, name)
        pre_arrays = {a: _load_array(d, f"preprocess_{a}") for a in meta["preprocessing"].get("arrays", [])}
        seg.preprocessor_ = Preprocessor.from_dict(meta["preprocessing"], pre_arrays)
        seg.state_ = arrays
        seg.k_ = int(meta["k"])
        seg.n_fit_ = int(meta.get("customers", 0))
        seg.noise_share_ = float(meta.get("noise_share") or 0.0)
        seg.fit_info_ = dict(meta.get("fit", {}))
        seg.selection_ = Selection.from_dict(meta["selection"])
        from shopseg.segment.stability import Stability

        seg.stability_ = Stability.from_dict(meta["stability"]) if meta.get("stability") else None
        seg.segment_names_ = {int(k): str(v) for k, v in meta.get("segment_names", {}).items()}
        seg.segment_actions_ = {int(k): str(v) for k, v in meta.get("segment_actions", {}).items()}
        seg._load_state_json(meta.get("state", {}))
        return cast(Self, seg), meta


def _load_array(d: Path, name: str) -> np.ndarray:
    path = d / f"{name}.npy"
    if not path.is_file():
        raise NotFittedError(f"the saved model in '{d}' is incomplete: {path.name} is missing")
    arr: np.ndarray = np.load(path, allow_pickle=False)
    return arr


def _upgrade_v1(meta: dict[str, Any]) -> dict[str, Any]:
    """Format 1 (the foundation's K-Means model) in the shape of format 2."""
    out = dict(meta)
    out["arrays"] = ["centers"]
    out["state"] = {"inertia": meta.get("inertia")}
    out["fit"] = {"method": "K-Means (Lloyd)"}
    return out


# ------------------------------------------------------------------------------------------------ factory
def _import_algorithms() -> None:
    importlib.import_module("shopseg.segment")


def available_algorithms() -> list[str]:
    _import_algorithms()
    return [a for a in ALGORITHMS if a in _REGISTRY]


def make_segmenter(algorithm: str, features: list[str] | None, **params: Any) -> Segmenter:
    """A segmenter by name (``kmeans``, ``minibatch``, ``ward``, ``gmm``, ``hdbscan``, ``rfm``, ``auto``);
    ``features`` may be None only for ``rfm`` (which scores recency, frequency and monetary)."""
    _import_algorithms()
    cls = _REGISTRY.get(algorithm)
    if cls is None:
        close = get_close_matches(str(algorithm), list(_REGISTRY), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown segmentation algorithm '{algorithm}'{hint} Choose one of {available_algorithms()}")
    accepted = cls.param_names()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"{algorithm} segmenter does not take {unknown}; it takes {sorted(accepted)}")
    if features is None and algorithm != "rfm":
        raise ConfigError(f"the {algorithm} segmenter needs a list of features")
    return cls(cast(list[str], features), **params)


def load_segmenter(directory: str | Path) -> tuple[Segmenter, dict[str, Any]]:
    """Load a saved model of any algorithm (dispatching on the JSON's ``algorithm``)."""
    return Segmenter.load(directory)


#: Config field -> segmenter parameter, where the names differ.
_CONFIG_NAMES = {
    "ward_exact_limit": "exact_limit",
    "gmm_covariance": "covariance_type",
    "hdbscan_min_cluster_size": "min_cluster_size",
    "hdbscan_min_samples": "min_samples",
    "hdbscan_fit_sample": "fit_sample",
    "auto_candidates": "candidates",
}


def segmenter_from_config(
    config: SegmentConfig, features: list[str], *, weights: dict[str, float] | None = None
) -> Segmenter:
    """The segmenter ``[segment]`` describes, given the resolved feature list; ``weights`` are added to the
    configured feature weights (e.g. for encoded customer attributes)."""
    _import_algorithms()
    cls = _REGISTRY[config.algorithm]
    accepted = set(cls.param_names())
    flat = config.model_dump()
    if config.algorithm == "gmm":
        flat["n_init"] = flat.pop("gmm_n_init")  # K-Means' restarts are not EM's
    params = {}
    for name, value in flat.items():
        pname = _CONFIG_NAMES.get(name, name)
        if pname in accepted and pname != "features":
            params[pname] = value
    if "weights" in params:
        params["weights"] = {**(params["weights"] or {}), **(weights or {})} or None
    return make_segmenter(config.algorithm, None if config.algorithm == "rfm" else features, **params)
