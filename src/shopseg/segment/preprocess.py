"""Preprocessing recorded in the model: fill, skew transform, feature removal, scaling, weights, optional PCA.

The steps, in order (each learnt on the training data and saved in the model JSON, with the larger tables as
``.npy`` arrays):

1. **fill**: missing and infinite values become the feature's training median;
2. **skew**: ``log1p`` for non-negative features whose skewness exceeds 1, or Yeo-Johnson (with its fitted
   lambda) for features whose absolute skewness exceeds 1, or nothing;
3. **removal**: features with no values or a constant value are dropped; with ``drop_correlated`` set, a
   feature whose absolute correlation with an earlier kept feature exceeds it is dropped as a near-duplicate
   (the reason names the feature it duplicates and the correlation);
4. **scaling**: standard (mean, sd), robust (median, interquartile range), quantile (to a standard normal
   through the training quantiles) or none;
5. **weights**: each scaled feature is multiplied by its weight (default 1);
6. **PCA** (optional): a number of components, or the share of variance to keep.

``Preprocessor(features)`` with no options is the foundation's behaviour (log1p, standard scaling, no
correlation check), which profiles rely on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import special, stats

from shopseg.errors import ConfigError, NotFittedError, SchemaError

#: A feature gets the skew transform when its sample skewness exceeds this (log1p: and it is non-negative).
SKEW_THRESHOLD = 1.0
#: Quantile scaling keeps at most this many training quantiles per feature.
N_QUANTILES = 1000
#: Fill values, skewness, correlations, scaling, quantiles, Yeo-Johnson lambdas and PCA are learnt on a seeded
#: sample this big (every customer below it).
FIT_SAMPLE = 200_000

Transform = Literal["log1p", "yeo-johnson", "none"]
Scaling = Literal["standard", "robust", "quantile", "none"]
TRANSFORMS: tuple[str, ...] = ("log1p", "yeo-johnson", "none")
SCALINGS: tuple[str, ...] = ("standard", "robust", "quantile", "none")
_QUANTILE_CLIP = 1e-7


@dataclass
class Preprocessor:
    """Learns the preprocessing of the segmentation features; ``transform`` applies it to any frame.

    After ``fit``, ``features`` holds the kept features (in input order) and ``input_features_`` the ones asked
    for; ``dropped_`` maps each removed feature to the reason.
    """

    features: list[str]
    skew: str = "log1p"
    scaling: str = "standard"
    pca: float | None = None
    weights: dict[str, float] | None = None
    drop_correlated: float | None = None
    drop_constant: bool = True
    seed: int = 0
    input_features_: list[str] = field(default_factory=list)
    fill_: list[float] = field(default_factory=list)
    log_: list[bool] = field(default_factory=list)
    lambdas_: list[float | None] = field(default_factory=list)
    center_: list[float] = field(default_factory=list)
    scale_: list[float] = field(default_factory=list)
    weights_: list[float] = field(default_factory=list)
    dropped_: dict[str, str] = field(default_factory=dict)
    quantiles_: np.ndarray | None = None
    pca_mean_: np.ndarray | None = None
    pca_components_: np.ndarray | None = None
    pca_explained_: list[float] = field(default_factory=list)

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame) -> Preprocessor:
        self._check_options()
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise SchemaError(f"features {missing} not in the feature table; available: {list(frame.columns)}")
        unknown_w = sorted(set(self.weights or {}) - set(self.features))
        if unknown_w:
            raise ConfigError(
                f"feature weights name {unknown_w}, which are not segmentation features; features: {self.features}"
            )
        self.input_features_ = list(self.features)
        n = len(frame)
        # everything is learnt on a seeded sample (all customers up to FIT_SAMPLE); only the constant check
        # looks at every customer
        sample = (
            np.sort(np.random.default_rng(self.seed).choice(n, FIT_SAMPLE, replace=False)) if n > FIT_SAMPLE else None
        )
        self.fill_, self.log_, self.lambdas_, self.center_, self.scale_, self.weights_ = [], [], [], [], [], []
        self.dropped_ = {}
        kept: list[str] = []
        columns: list[np.ndarray] = []
        for f in self.features:
            full = _numeric(frame, f)
            ok = np.isfinite(full)
            if not ok.any():
                self.dropped_[f] = "no values"
                continue
            if self.drop_constant and full[ok].min() == full[ok].max():
                self.dropped_[f] = "constant"
                continue
            x = full if sample is None else full[sample]
            finite = x[np.isfinite(x)]
            fill = float(np.median(finite if finite.size else full[ok]))
            x = np.where(np.isfinite(x), x, fill)
            use_log, lam = False, None
            sk = _skew(x)
            if self.skew == "log1p" and x.min() >= 0 and sk > SKEW_THRESHOLD:
                use_log = True
                x = np.log1p(x)
            elif self.skew == "yeo-johnson" and abs(sk) > SKEW_THRESHOLD:
                lam = float(stats.yeojohnson_normmax(x))
                x = _yeo_johnson(x, lam)
            kept.append(f)
            columns.append(x)
            self.fill_.append(fill)
            self.log_.append(use_log)
            self.lambdas_.append(lam)
        if self.drop_correlated is not None and len(kept) > 1:
            kept, columns = self._drop_near_duplicates(kept, columns)
        if not kept:
            raise SchemaError(
                f"every segmentation feature was dropped ({self.dropped_}); choose other features in [segment] features"
            )
        x = np.column_stack(columns)
        self._fit_scaling(x)
        self.features = kept
        self.weights_ = [float((self.weights or {}).get(f, 1.0)) for f in kept]
        if self.pca is not None:
            self._fit_pca(self._scale(x) * np.asarray(self.weights_))
        return self

    def _check_options(self) -> None:
        if self.skew not in TRANSFORMS:
            raise ConfigError(f"unknown skew transform '{self.skew}'; choose one of {list(TRANSFORMS)}")
        if self.scaling not in SCALINGS:
            raise ConfigError(f"unknown scaling '{self.scaling}'; choose one of {list(SCALINGS)}")
        if self.drop_correlated is not None and not 0 < self.drop_correlated <= 1:
            raise ConfigError(f"drop_correlated must be in (0, 1], got {self.drop_correlated}")
        if self.pca is not None and not (0 < self.pca < 1 or (float(self.pca).is_integer() and self.pca >= 1)):
            raise ConfigError(
                f"pca must be a number of components (1, 2, ...) or a share of variance in (0, 1), got {self.pca}"
            )
        bad = {f: w for f, w in (self.weights or {}).items() if not np.isfinite(w) or w < 0}
        if bad:
            raise ConfigError(f"feature weights must be finite and non-negative, got {bad}")

    def _drop_near_duplicates(self, kept: list[str], columns: list[np.ndarray]) -> tuple[list[str], list[np.ndarray]]:
        assert self.drop_correlated is not None
        x = np.column_stack(columns)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.corrcoef(x, rowvar=False)
        keep_idx: list[int] = []
        for j in range(len(kept)):
            dup = next((i for i in keep_idx if abs(r[i, j]) > self.drop_correlated), None)
            if dup is None:
                keep_idx.append(j)
            else:
                self.dropped_[kept[j]] = (
                    f"near-duplicate of {kept[dup]} (|r| = {abs(r[dup, j]):.3f} > {self.drop_correlated})"
                )
        self.fill_ = [self.fill_[j] for j in keep_idx]
        self.log_ = [self.log_[j] for j in keep_idx]
        self.lambdas_ = [self.lambdas_[j] for j in keep_idx]
        return [kept[j] for j in keep_idx], [columns[j] for j in keep_idx]

    def _fit_scaling(self, x: np.ndarray) -> None:
        d = x.shape[1]
        self.quantiles_ = None
        if self.scaling == "standard":
            self.center_ = [float(v) for v in x.mean(axis=0)]
            self.scale_ = [float(v) or 1.0 for v in x.std(axis=0)]
        elif self.scaling == "robust":
            q1, med, q3 = np.percentile(x, [25, 50, 75], axis=0)
            iqr = q3 - q1
            sd = x.std(axis=0)
            # a feature whose middle half is one value (e.g. 60 % buy once) falls back to its sd
            self.center_ = [float(v) for v in med]
            self.scale_ = [float(iqr[j]) if iqr[j] > 0 else (float(sd[j]) or 1.0) for j in range(d)]
        elif self.scaling == "quantile":
            nq = int(min(N_QUANTILES, len(x)))
            self.quantiles_ = np.percentile(x, np.linspace(0, 100, nq), axis=0)
            self.center_, self.scale_ = [0.0] * d, [1.0] * d
        else:
            self.center_, self.scale_ = [0.0] * d, [1.0] * d

    def _fit_pca(self, z: np.ndarray) -> None:
        assert self.pca is not None
        mean = z.mean(axis=0)
        _, s, vt = np.linalg.svd(z - mean, full_matrices=False)
        # deterministic signs: the largest loading of each component is positive
        signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
        vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
        var = s**2
        ratio = var / var.sum() if var.sum() > 0 else np.zeros_like(var)
        if self.pca < 1:
            n_comp = int(np.searchsorted(np.cumsum(ratio), float(self.pca) - 1e-12) + 1)
        else:
            n_comp = int(self.pca)
        n_comp = max(1, min(n_comp, len(vt)))
        self.pca_mean_ = mean
        self.pca_components_ = vt[:n_comp]
        self.pca_explained_ = [float(v) for v in ratio[:n_comp]]

    # ------------------------------------------------------------------------------------------------ apply
    def check_columns(self, frame: pd.DataFrame) -> None:
        """Refuse data that lacks a feature the model uses, naming the missing and the unknown columns."""
        if not self.center_:
            raise NotFittedError("the preprocessor is not fitted; call fit first")
        # every feature the model was fitted on, including those it dropped: data with another feature set is
        # not the data the model describes
        missing = [f for f in (self.input_features_ or self.features) if f not in frame.columns]
        if missing:
            known = set(self.input_features_ or self.features)
            extra = [
                str(c)
                for c in frame.columns
                if c not in known and c != "customer_id" and pd.api.types.is_numeric_dtype(frame[c])
            ]
            extra_txt = f"; it has columns the model was not fitted on: {extra}" if extra else ""
            fitted_on = self.input_features_ or self.features
            raise NotFittedError(
                f"the model uses features {missing} that this data lacks{extra_txt}; score data with the same "
                f"features (e.g. product ids) as the data the model was fitted on: {fitted_on}"
            )
        wrong = [f for f in self.features if not pd.api.types.is_numeric_dtype(frame[f])]
        if wrong:
            raise SchemaError(f"features {wrong} are not numeric in this data; the model needs numbers there")

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_columns(frame)
        x = np.array(frame[self.features].to_numpy(dtype="float64", na_value=np.nan), dtype=np.float64, order="C")
        bad = ~np.isfinite(x)
        if bad.any():
            x[bad] = np.broadcast_to(np.asarray(self.fill_), x.shape)[bad]
        for j, (lg, lam) in enumerate(zip(self.log_, self.lambdas_ or [None] * len(self.log_), strict=True)):
            if lg:
                x[:, j] = np.log1p(np.clip(x[:, j], 0, None))
            elif lam is not None:
                x[:, j] = _yeo_johnson(x[:, j], lam)
        z = self._scale(x, inplace=True)
        w = np.asarray(self.weights_ or [1.0] * x.shape[1])
        if (w != 1.0).any():
            z *= w
        if self.pca_components_ is not None:
            assert self.pca_mean_ is not None
            z = (z - self.pca_mean_) @ self.pca_components_.T
        out: np.ndarray = np.ascontiguousarray(z, dtype=np.float64)
        return out

    def _scale(self, x: np.ndarray, inplace: bool = False) -> np.ndarray:
        if self.scaling == "quantile":
            assert self.quantiles_ is not None
            q = self.quantiles_
            refs = np.linspace(0.0, 1.0, len(q))
            u = np.empty_like(x)
            for j in range(x.shape[1]):
                # mean of the forward and backward interpolation: repeated quantiles (ties) map to their middle
                fwd = np.interp(x[:, j], q[:, j], refs)
                bwd = -np.interp(-x[:, j], -q[::-1, j], -refs[::-1])
                u[:, j] = 0.5 * (fwd + bwd)
            out: np.ndarray = special.ndtri(np.clip(u, _QUANTILE_CLIP, 1 - _QUANTILE_CLIP))
            return out
        if inplace:
            x -= np.asarray(self.center_)
            x /= np.asarray(self.scale_)
            return x
        scaled: np.ndarray = (x - np.asarray(self.center_)) / np.asarray(self.scale_)
        return scaled

    @property
    def output_names(self) -> list[str]:
        """Column names of ``transform``'s output: the features, or pc1, pc2 … after PCA."""
        if self.pca_components_ is not None:
            return [f"pc{i + 1}" for i in range(len(self.pca_components_))]
        return list(self.features)

    # ------------------------------------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "input_features": self.input_features_ or self.features,
            "options": {
                "skew": self.skew,
                "scaling": self.scaling,
                "pca": self.pca,
                "weights": self.weights,
                "drop_correlated": self.drop_correlated,
                "drop_constant": self.drop_constant,
                "seed": self.seed,
            },
            "fill": self.fill_,
            "log1p": self.log_,
            "yeo_johnson_lambda": self.lambdas_,
            "center": self.center_,
            "scale": self.scale_,
            "weights": self.weights_,
            "dropped": self.dropped_,
            "pca_explained_variance_ratio": self.pca_explained_,
            "arrays": sorted(self.arrays()),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The learnt tables too big for the JSON (saved as ``preprocess_<name>.npy``)."""
        out: dict[str, np.ndarray] = {}
        if self.quantiles_ is not None:
            out["quantiles"] = self.quantiles_
        if self.pca_components_ is not None and self.pca_mean_ is not None:
            out["pca_components"] = self.pca_components_
            out["pca_mean"] = self.pca_mean_
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> Preprocessor:
        o = d.get("options", {})
        p = cls(
            list(d["features"]),
            skew=o.get("skew", "log1p"),
            scaling=o.get("scaling", "standard"),
            pca=o.get("pca"),
            weights=o.get("weights"),
            drop_correlated=o.get("drop_correlated"),
            drop_constant=bool(o.get("drop_constant", True)),
            seed=int(o.get("seed", 0)),
        )
        p.input_features_ = list(d.get("input_features", d["features"]))
        p.fill_, p.log_ = [float(v) for v in d["fill"]], [bool(v) for v in d["log1p"]]
        p.lambdas_ = [None if v is None else float(v) for v in d.get("yeo_johnson_lambda", [None] * len(p.log_))]
        p.center_, p.scale_ = [float(v) for v in d["center"]], [float(v) for v in d["scale"]]
        p.weights_ = [float(v) for v in d.get("weights", [1.0] * len(p.features))]
        p.dropped_ = dict(d.get("dropped", {}))
        p.pca_explained_ = [float(v) for v in d.get("pca_explained_variance_ratio", [])]
        arrays = arrays or {}
        needed = [a for a in d.get("arrays", []) if a not in arrays]
        if needed:
            raise NotFittedError(f"the saved preprocessing needs the arrays {needed}, which were not found")
        p.quantiles_ = arrays.get("quantiles")
        p.pca_components_ = arrays.get("pca_components")
        p.pca_mean_ = arrays.get("pca_mean")
        return p

    def describe(self) -> pd.DataFrame:
        """One row per input feature: kept or dropped (why), skew transform, weight."""
        rows = []
        kept = {f: i for i, f in enumerate(self.features)}
        for f in self.input_features_ or self.features:
            if f in kept:
                i = kept[f]
                lam = self.lambdas_[i] if self.lambdas_ else None
                tr = "log1p" if self.log_[i] else (f"Yeo-Johnson (lambda {lam:.3f})" if lam is not None else "none")
                rows.append((f, "kept", tr, self.scaling, self.weights_[i] if self.weights_ else 1.0))
            else:
                rows.append((f, f"dropped: {self.dropped_.get(f, '')}", "", "", np.nan))
        return pd.DataFrame(rows, columns=["feature", "status", "skew transform", "scaling", "weight"])


def _numeric(frame: pd.DataFrame, f: str) -> np.ndarray:
    col = frame[f]
    if not pd.api.types.is_numeric_dtype(col):
        raise SchemaError(f"feature '{f}' is not numeric (dtype {col.dtype}); segment on numeric features only")
    out: np.ndarray = col.to_numpy(dtype="float64", na_value=np.nan)
    return out


def _skew(x: np.ndarray) -> float:
    sd = x.std()
    if sd == 0:
        return 0.0
    return float(np.mean(((x - x.mean()) / sd) ** 3))


def _yeo_johnson(x: np.ndarray, lam: float) -> np.ndarray:
    out: np.ndarray = stats.yeojohnson(x, lmbda=lam)
    return out
