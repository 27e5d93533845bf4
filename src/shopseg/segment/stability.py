"""Stability of a segmentation under resampling (Hennig 2007, "cluster-wise assessment of cluster stability").

On a seeded base sample of the customers (``sample``, default 2,000, so the cost does not grow with the shop),
the segmenter is refitted on ``resamples`` seeded resamples (bootstrap: drawn with replacement; HDBSCAN:
80 % subsamples without replacement, since duplicated points distort densities) for every candidate k. Each
refit labels the whole base sample with its own assignment rule. Two figures come out:

* per k: the mean adjusted Rand index between the refits (all pairs) — how reproducible a k-segment solution
  is at all;
* per segment of the final model: the mean over refits of the Jaccard similarity between the segment and its
  most similar refitted segment (customers of the base sample). Below ``threshold`` (0.6, Hennig's "unstable")
  the segment is flagged: it may be an artefact of this sample rather than a group that exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from shopseg.segment.base import Segmenter

SUBSAMPLE_SHARE = 0.8


@dataclass
class Stability:
    """Per-k agreement between refits and per-segment Jaccard stability of the final segmentation."""

    table: pd.DataFrame  # k, ari_mean, ari_sd
    segments: pd.DataFrame  # segment, jaccard, stable
    k: int
    resamples: int
    sample: int
    threshold: float
    method: str

    def per_segment(self) -> dict[int, float]:
        return {int(r.segment): float(r.jaccard) for r in self.segments.itertuples()}

    def unstable(self) -> list[int]:
        return [int(r.segment) for r in self.segments.itertuples() if not r.stable]

    def ari_at(self, k: int) -> float:
        row = self.table[self.table["k"] == k]
        return float(row["ari_mean"].iloc[0]) if len(row) else float("nan")

    def summary(self) -> str:
        bad = self.unstable()
        ari = self.ari_at(self.k)
        head = (
            f"{self.resamples} {self.method} refits on a seeded sample of {self.sample:,} customers: mean adjusted "
            f"Rand between refits at k={self.k} is {ari:.2f}"
        )
        if not bad:
            return f"{head}; every segment is stable (Jaccard >= {self.threshold:.2f})."
        return (
            f"{head}; segment{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))} "
            f"{'are' if len(bad) > 1 else 'is'} unstable (Jaccard below {self.threshold:.2f})."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table.to_dict(orient="records"),
            "segments": self.segments.to_dict(orient="records"),
            "k": self.k,
            "resamples": self.resamples,
            "sample": self.sample,
            "threshold": self.threshold,
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Stability:
        table = pd.DataFrame(d["table"], columns=["k", "ari_mean", "ari_sd"])
        table["k"] = table["k"].astype("int64")
        for c in ("ari_mean", "ari_sd"):
            table[c] = pd.to_numeric(table[c], errors="coerce").astype("float64")
        seg = pd.DataFrame(d["segments"], columns=["segment", "jaccard", "stable"])
        seg["segment"] = seg["segment"].astype("int64")
        seg["jaccard"] = pd.to_numeric(seg["jaccard"], errors="coerce").astype("float64")
        seg["stable"] = seg["stable"].astype(bool)
        return cls(
            table, seg, int(d["k"]), int(d["resamples"]), int(d["sample"]), float(d["threshold"]), str(d["method"])
        )


def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings (any integer labels, -1 included as a label)."""
    ai, bi = a - int(a.min()), b - int(b.min())  # small non-negative integers (-1 allowed in the input)
    nb = int(bi.max()) + 1
    cont = np.bincount(ai * nb + bi, minlength=(int(ai.max()) + 1) * nb).astype(np.float64)
    n = float(len(a))

    def pairs(v: np.ndarray) -> float:
        return float((v * (v - 1) / 2).sum())

    sum_ij = pairs(cont)
    sum_a = pairs(np.bincount(ai).astype(np.float64))
    sum_b = pairs(np.bincount(bi).astype(np.float64))
    total = n * (n - 1) / 2
    expected = sum_a * sum_b / total if total else 0.0
    max_index = (sum_a + sum_b) / 2
    if max_index == expected:
        return 1.0
    return (sum_ij - expected) / (max_index - expected)


def best_jaccard(reference: np.ndarray, other: np.ndarray, segments: list[int]) -> np.ndarray:
    """For each segment of ``reference``: the largest Jaccard with a segment of ``other`` (noise excluded)."""
    out = np.zeros(len(segments))
    valid = other >= 0
    for i, s in enumerate(segments):
        if not (reference == s).any():
            out[i] = np.nan  # not in the base sample: cannot be measured
    if not valid.any():
        return out
    _, oi = np.unique(other[valid], return_inverse=True)
    o_sizes = np.bincount(oi).astype(np.float64)
    for i, s in enumerate(segments):
        in_s = reference == s
        size = float(in_s.sum())
        if size == 0:
            continue
        inter = np.bincount(oi, weights=in_s[valid].astype(np.float64), minlength=len(o_sizes))
        out[i] = float((inter / (size + o_sizes - inter)).max())
    return out


def bootstrap_stability(
    seg: Segmenter,
    x: np.ndarray,
    labels: np.ndarray,
    ks: list[int],
    *,
    resamples: int,
    sample: int,
    threshold: float,
    seed: int,
    workers: int = 1,
) -> Stability:
    """Refit ``seg``'s algorithm on ``resamples`` seeded resamples of a base sample (see the module docstring).
    ``workers`` > 1 refits that many resamples at once on threads (the fits release the interpreter lock in
    their compiled loops); every resample and its seed are drawn first, so the result does not depend on it."""
    from shopseg.segment.base import one_thread, seeded_sample

    base = seeded_sample(len(x), sample, seed + 2)
    xb, lb = x[base], labels[base]
    m = len(base)
    rng = np.random.default_rng(seed + 3)
    runs: dict[int, list[np.ndarray]] = {k: [] for k in ks}
    subsample = seg.resampling == "subsample"
    draws = [
        np.sort(rng.choice(m, max(2, round(SUBSAMPLE_SHARE * m)), replace=False))
        if subsample
        else rng.integers(0, m, m)
        for _ in range(resamples)
    ]

    def refit(r: int) -> dict[int, np.ndarray]:
        # OpenMP's thread count is per thread: a worker thread would otherwise start a team of its own
        with one_thread():
            return seg._resample_labels(xb[draws[r]], ks, seed + 100 + r, xb)

    if workers > 1 and resamples > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, resamples)) as pool:
            results = list(pool.map(refit, range(resamples)))
    else:
        results = [refit(r) for r in range(resamples)]
    for got in results:
        for k in ks:
            if k in got:
                runs[k].append(got[k])
    rows = []
    for k in ks:
        lab = runs[k]
        aris = [adjusted_rand(lab[i], lab[j]) for i in range(len(lab)) for j in range(i + 1, len(lab))]
        rows.append((k, float(np.mean(aris)) if aris else np.nan, float(np.std(aris)) if aris else np.nan))
    table = pd.DataFrame(rows, columns=["k", "ari_mean", "ari_sd"])
    k_final = len(np.unique(labels[labels >= 0]))
    segments = sorted(int(s) for s in np.unique(labels[labels >= 0]))
    final_runs = runs.get(k_final, [])
    if final_runs:
        jac = np.mean([best_jaccard(lb, other, segments) for other in final_runs], axis=0)
    else:
        jac = np.full(len(segments), np.nan)
    seg_table = pd.DataFrame({"segment": segments, "jaccard": jac})
    seg_table["stable"] = seg_table["jaccard"] >= threshold  # NaN (not measurable) counts as not stable
    method = "subsample (80 %)" if subsample else "bootstrap"
    return Stability(table, seg_table, k_final, resamples, m, threshold, method)
