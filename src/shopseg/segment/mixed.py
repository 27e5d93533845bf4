"""Mixed numeric and categorical data for segmentation, and the check that one attribute does not decide it.

**Weighted one-hot encoding** (:class:`CategoricalEncoder`). A categorical attribute with values of shares
``p_1 … p_m`` is one-hot encoded, centred and scaled by ``w``: a customer with value ``j`` sits at
``w · (e_j − p)``. The block is weighted so that it counts like *one* standardised numeric feature: for two
customers drawn at random, a standardised numeric feature adds 2 to the expected squared distance (twice its
variance); the block adds ``2 w² (1 − Σ p²)`` (two customers differ with probability ``1 − Σ p²`` and then lie
``√2 w`` apart). So

    w = categorical_weight / √(1 − Σ p²)

The segmenter gets the block in an orthonormal basis of its ``m − 1`` dimensions (the eigenvectors of its
covariance ``w² (diag p − p pᵀ)``): the same distances between customers, but columns that are uncorrelated,
so a near-duplicate filter cannot drop one value of an attribute, and whose scale is known. The columns are
named ``attribute~1 … attribute~(m−1)``; their weights (:meth:`CategoricalEncoder.weights`) undo the
segmenter's per-column scaling, so the block enters with exactly the distances above. A two-valued attribute
is one column. Missing values are a value of their own (``(missing)``); values beyond the ``max_levels - 1``
most frequent are grouped as ``(other)``; a value not seen in training is treated as ``(other)`` when that
exists, else as missing when that exists, else it lies at the centre of the block.

**One attribute deciding the segments** (:func:`attribute_dominance`). A segmentation in which, say, every
segment is 100 % one gender says little about behaviour. For each categorical attribute the check computes
Cramér's V between segment and attribute value (``V = √(χ² / (n · (min(k, m) − 1)))``, 0 = independent,
1 = the attribute is a function of the segment or vice versa) and the *purity*, the smallest share that a
segment's most common value has. The attribute is said to decide the segments when ``V ≥ 0.9``, or when
every segment is at least 95 % one value and the segments do not all share that value (both thresholds
configurable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shopseg.errors import NotFittedError, SchemaError

__all__ = [
    "MISSING",
    "OTHER",
    "AttributeDominance",
    "CategoricalEncoder",
    "attribute_dominance",
    "cramers_v",
    "dominance_warning",
]

MISSING = "(missing)"
OTHER = "(other)"
SEP = "~"


def _as_text(col: pd.Series) -> pd.Series:
    """Values as text, missing as :data:`MISSING` (numbers written as integers when they are whole)."""

    def one(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
            return MISSING
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        s = str(v).strip()
        return s if s else MISSING

    return col.map(one).astype(object)


@dataclass
class CategoricalEncoder:
    """Weighted one-hot encoding of categorical columns in an orthonormal basis (see the module docstring).

    ``fit`` learns the values (``levels_``), their shares, the block weights and each block's basis;
    ``transform`` returns the encoded columns (``attribute~1`` …); ``weights(scaling)`` the per-column weights
    that undo a segmenter's scaling; ``matrix`` the weighted, centred one-hot block itself.
    """

    columns: list[str]
    weight: float = 1.0
    max_levels: int = 20
    levels_: dict[str, list[str]] = field(default_factory=dict)
    shares_: dict[str, list[float]] = field(default_factory=dict)
    block_weight_: dict[str, float] = field(default_factory=dict)
    coords_: dict[str, list[list[float]]] = field(default_factory=dict)  # level -> coordinates in the basis
    sd_: dict[str, float] = field(default_factory=dict)  # output column -> its standard deviation
    iqr_: dict[str, float] = field(default_factory=dict)  # output column -> its interquartile range
    dropped_: dict[str, str] = field(default_factory=dict)

    def fit(self, frame: pd.DataFrame) -> CategoricalEncoder:
        if self.weight <= 0:
            raise SchemaError(f"categorical weight must be positive, got {self.weight}")
        if self.max_levels < 2:
            raise SchemaError(f"max_levels must be at least 2, got {self.max_levels}")
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise SchemaError(f"categorical attributes {missing} are not in the table; it has {list(frame.columns)}")
        self.levels_, self.shares_, self.block_weight_, self.coords_ = {}, {}, {}, {}
        self.sd_, self.iqr_, self.dropped_ = {}, {}, {}
        n = len(frame)
        for c in self.columns:
            counts = _as_text(frame[c]).value_counts(sort=False)
            # most frequent first; ties by value, so the order does not depend on row order
            order = sorted(counts.index, key=lambda v: (-int(counts[v]), str(v)))
            if len(order) > self.max_levels:
                keep = order[: self.max_levels - 1]
                other = int(sum(counts[v] for v in order[self.max_levels - 1 :]))
                levels, freq = [*keep, OTHER], [int(counts[v]) for v in keep] + [other]
            else:
                levels, freq = list(order), [int(counts[v]) for v in order]
            p = np.asarray(freq, dtype=float) / max(n, 1)
            gini = float(1.0 - (p**2).sum())
            if len(levels) < 2 or gini <= 1e-12:
                self.dropped_[c] = "one value only"
                continue
            w = float(self.weight / np.sqrt(gini))
            coords, lam = _basis(p, w)
            self.levels_[c] = [str(v) for v in levels]
            self.shares_[c] = [float(v) for v in p]
            self.block_weight_[c] = w
            self.coords_[c] = coords.tolist()
            for k in range(coords.shape[1]):
                name = f"{c}{SEP}{k + 1}"
                self.sd_[name] = float(np.sqrt(max(lam[k], 0.0)))
                self.iqr_[name] = _discrete_iqr(coords[:, k], p)
        return self

    def _check(self) -> None:
        if not self.levels_ and not self.dropped_:
            raise NotFittedError("the categorical encoder is not fitted; call fit first")

    def _codes(self, frame: pd.DataFrame, c: str) -> np.ndarray:
        """Level index of every row (-1: unseen, placed at the block's centre)."""
        index = {v: i for i, v in enumerate(self.levels_[c])}
        unseen = index.get(OTHER, index.get(MISSING, -1))
        values = _as_text(frame[c]) if c in frame.columns else pd.Series([MISSING] * len(frame), dtype=object)
        return np.asarray([index.get(v, unseen) for v in values], dtype=np.int64)

    @property
    def output_columns(self) -> list[str]:
        return [f"{c}{SEP}{k + 1}" for c in self.levels_ for k in range(len(self.levels_[c]) - 1)]

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The encoded columns ``attribute~1 …`` (index of ``frame``)."""
        self._check()
        out: dict[str, np.ndarray] = {}
        for c in self.levels_:
            coords = np.vstack([np.asarray(self.coords_[c]), np.zeros((1, len(self.levels_[c]) - 1))])
            x = coords[self._codes(frame, c)]  # code -1 picks the appended centre row
            for k in range(x.shape[1]):
                out[f"{c}{SEP}{k + 1}"] = x[:, k]
        return pd.DataFrame(out, index=frame.index)

    def weights(self, scaling: str = "standard") -> dict[str, float]:
        """Per-column weights that undo a segmenter's per-column scaling (standard: sd; robust: interquartile
        range, else sd; none: 1), so each block keeps the distances of the weighted one-hot encoding."""
        self._check()
        if scaling == "none":
            return {name: 1.0 for name in self.sd_}
        if scaling == "robust":
            return {name: (self.iqr_[name] if self.iqr_[name] > 0 else self.sd_[name]) for name in self.sd_}
        return dict(self.sd_)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The weighted, centred one-hot block ``w · (e_j − p)`` of every kept attribute (all value levels)."""
        self._check()
        blocks = []
        for c in self.levels_:
            codes = self._codes(frame, c)
            onehot = (codes[:, None] == np.arange(len(self.levels_[c]))[None, :]).astype(float)
            p = np.asarray(self.shares_[c])[None, :]
            blocks.append(self.block_weight_[c] * np.where(codes[:, None] >= 0, onehot - p, 0.0))
        if not blocks:
            return np.zeros((len(frame), 0))
        return np.hstack(blocks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "weight": self.weight,
            "max_levels": self.max_levels,
            "levels": self.levels_,
            "shares": self.shares_,
            "block_weight": self.block_weight_,
            "coords": self.coords_,
            "sd": self.sd_,
            "iqr": self.iqr_,
            "dropped": self.dropped_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CategoricalEncoder:
        e = cls(list(d["columns"]), float(d["weight"]), int(d["max_levels"]))
        e.levels_ = {k: [str(x) for x in v] for k, v in d["levels"].items()}
        e.shares_ = {k: [float(x) for x in v] for k, v in d["shares"].items()}
        e.block_weight_ = {k: float(v) for k, v in d["block_weight"].items()}
        e.coords_ = {k: [[float(x) for x in row] for row in v] for k, v in d["coords"].items()}
        e.sd_ = {k: float(v) for k, v in d["sd"].items()}
        e.iqr_ = {k: float(v) for k, v in d["iqr"].items()}
        e.dropped_ = dict(d.get("dropped", {}))
        return e


def _basis(p: np.ndarray, w: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of each level's point ``w (e_j − p)`` in the eigenbasis of the block's covariance
    ``w² (diag p − p pᵀ)`` (the m − 1 non-zero eigenvalues, largest first), and those eigenvalues."""
    m = len(p)
    cov = w**2 * (np.diag(p) - np.outer(p, p))
    lam, vec = np.linalg.eigh(cov)
    order = np.argsort(-lam, kind="stable")[: m - 1]
    lam, vec = lam[order], vec[:, order]
    # deterministic signs: the largest loading of each axis is positive
    signs = np.sign(vec[np.abs(vec).argmax(axis=0), np.arange(vec.shape[1])])
    vec = vec * np.where(signs == 0, 1.0, signs)[None, :]
    points = w * (np.eye(m) - p[None, :])
    coords: np.ndarray = points @ vec
    return coords, lam


def _discrete_iqr(values: np.ndarray, p: np.ndarray) -> float:
    """Interquartile range of a variable that takes ``values[j]`` with probability ``p[j]`` (numpy's default
    linear interpolation is not needed: the quartiles of a large sample are the distribution's quantiles)."""
    order = np.argsort(values, kind="stable")
    v, cum = values[order], np.cumsum(p[order])
    q1 = v[np.searchsorted(cum, 0.25, side="left").clip(0, len(v) - 1)]
    q3 = v[np.searchsorted(cum, 0.75, side="left").clip(0, len(v) - 1)]
    return float(q3 - q1)


# ------------------------------------------------------------------------------------------ dominance check


def cramers_v(a: np.ndarray | pd.Series, b: np.ndarray | pd.Series) -> float:
    """Cramér's V of two categorical variables (no bias correction, no continuity correction); 0 when either
    has a single value."""
    table = pd.crosstab(np.asarray(a), np.asarray(b)).to_numpy(dtype=float)
    r, k = table.shape
    if min(r, k) < 2:
        return 0.0
    n = table.sum()
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (n * (min(r, k) - 1))))


@dataclass(frozen=True)
class AttributeDominance:
    """How strongly one categorical attribute lines up with the segments."""

    attribute: str
    cramers_v: float
    purity: float  # smallest share of a segment's most common value
    dominant: dict[int, str]  # segment -> its most common value
    dominant_share: dict[int, float]
    decides: bool

    def describe(self) -> str:
        parts = ", ".join(f"segment {s}: {self.dominant_share[s]:.0%} {v}" for s, v in self.dominant.items())
        return f"{self.attribute} (Cramér's V {self.cramers_v:.2f}; {parts})"


def attribute_dominance(
    frame: pd.DataFrame,
    labels: np.ndarray,
    attributes: list[str],
    *,
    v_threshold: float = 0.9,
    purity_threshold: float = 0.95,
) -> list[AttributeDominance]:
    """Cramér's V and purity of each categorical attribute against the segments (missing is a value)."""
    if len(frame) != len(labels):
        raise SchemaError(f"{len(labels)} labels for {len(frame)} customers")
    out = []
    lab = np.asarray(labels)
    for a in attributes:
        values = _as_text(frame[a]).to_numpy()
        v = cramers_v(lab, values)
        tab = pd.crosstab(lab, values)
        shares = tab.div(tab.sum(axis=1), axis=0)
        dominant = {int(s): str(shares.loc[s].idxmax()) for s in shares.index}
        dshare = {int(s): float(shares.loc[s].max()) for s in shares.index}
        purity = min(dshare.values()) if dshare else 0.0
        splits = len(set(dominant.values())) > 1
        decides = len(dominant) > 1 and (v >= v_threshold or (purity >= purity_threshold and splits))
        out.append(AttributeDominance(a, v, purity, dominant, dshare, decides))
    return out


def dominance_warning(result: list[AttributeDominance]) -> str | None:
    """The run's warning text when an attribute decides the segments, else None."""
    hits = [d for d in result if d.decides]
    if not hits:
        return None
    names = "; ".join(d.describe() for d in hits)
    return (
        f"one attribute alone decides the segments: {names}. Such segments say little about behaviour; "
        "leave the attribute out of the segmentation ([customers] segment_on) or lower its weight "
        "([customers] categorical_weight), and read it from the composition table instead."
    )
