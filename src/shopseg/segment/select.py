"""Choosing k from several indices together.

For every candidate k the segmenter's own clustering is judged by the elbow (knee of the within-segment sum
of squares), the silhouette (on a seeded sample), Calinski-Harabasz, Davies-Bouldin, the gap statistic (on a
seeded sample against seeded uniform reference sets) and, for Gaussian mixtures, the BIC. Each index ranks the
candidate k (the elbow and the gap by the distance from the k they pick); the ranks are added (a Borda count)
and the best total wins, ties going to the smaller k. The reason is stated in words, and a k forced by hand
that no index supports is warned about.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

#: How each index is written in reasons and the report.
INDEX_NAMES: dict[str, str] = {
    "elbow": "elbow",
    "silhouette": "silhouette",
    "calinski_harabasz": "Calinski-Harabasz",
    "davies_bouldin": "Davies-Bouldin",
    "gap": "gap statistic",
    "bic": "BIC",
}

#: ``cluster_all(x, ks, seed) -> {k: labels}``: the segmenter's clustering for every k at once.
ClusterAll = Callable[[np.ndarray, list[int], int], dict[int, np.ndarray]]


def knee(ks: list[int], values: list[float]) -> int:
    """Kneedle on a decreasing convex curve: the k farthest below the chord from first to last point."""
    if len(ks) < 3:
        return ks[0]
    x = np.asarray(ks, dtype=float)
    y = np.asarray(values, dtype=float)
    xn = (x - x[0]) / (x[-1] - x[0])
    span = y[0] - y[-1]
    if span <= 0:
        return ks[0]
    yn = (y - y[-1]) / span  # 1 .. 0, decreasing
    diff = (1 - xn) - yn  # distance below the straight line from (0,1) to (1,0)
    return int(ks[int(np.argmax(diff))])


@dataclass
class Selection:
    """The k-selection of one fit: the table of every index per k, the chosen k and why."""

    table: pd.DataFrame  # k, inertia, silhouette, calinski_harabasz, davies_bouldin, [gap, gap_se], [bic], points
    chosen: int
    knee: int
    reason: str
    forced: bool
    warning: str | None
    gap_k: int | None = None
    bic_k: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "table": self.table.to_dict(orient="records"),
            "chosen": self.chosen,
            "knee": self.knee,
            "reason": self.reason,
            "forced": self.forced,
            "warning": self.warning,
            "gap_k": self.gap_k,
            "bic_k": self.bic_k,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Selection:
        table = pd.DataFrame(d["table"])  # type: ignore[arg-type]
        for c in table.columns:
            table[c] = pd.to_numeric(table[c], errors="coerce")
        if "k" in table:
            table["k"] = table["k"].astype("int64")
        if "points" in table:
            table["points"] = table["points"].astype("int64")
        gap_k, bic_k = d.get("gap_k"), d.get("bic_k")
        return cls(
            table,
            int(d["chosen"]),  # type: ignore[call-overload]
            int(d["knee"]),  # type: ignore[call-overload]
            str(d["reason"]),
            bool(d["forced"]),
            None if d.get("warning") is None else str(d["warning"]),
            None if gap_k is None else int(gap_k),  # type: ignore[call-overload]
            None if bic_k is None else int(bic_k),  # type: ignore[call-overload]
        )


def within_ss(x: np.ndarray, labels: np.ndarray) -> float:
    """Pooled within-segment sum of squared distances to the segment means (noise, label -1, left out)."""
    total = 0.0
    for c in np.unique(labels):
        if c < 0:
            continue
        xc = x[labels == c]
        total += float(((xc - xc.mean(axis=0)) ** 2).sum())
    return total


def silhouettes(x: np.ndarray, labelings: Sequence[np.ndarray], *, block: int = 1024) -> list[float]:
    """Mean silhouette of each labelling of the points ``x`` (noise, label -1, left out), as scikit-learn defines
    it (0 for a customer alone in its segment). The distances are made in blocks of rows and summed per segment
    of every labelling at once (one matrix product per block), so the full distance matrix is never held: one
    pass over the distances for all k instead of one per k over a matrix of 8 x n² bytes."""
    n = len(x)
    parts: list[tuple[np.ndarray, np.ndarray, int, int]] = []  # (keep, segment of each kept point, columns)
    onehots = []
    col = 0
    for labels in labelings:
        keep = np.asarray(labels) >= 0
        _, lab = np.unique(np.asarray(labels)[keep], return_inverse=True)
        k = int(lab.max()) + 1 if len(lab) else 0
        h = np.zeros((n, k))
        h[np.flatnonzero(keep), lab] = 1.0
        onehots.append(h)
        parts.append((keep, lab, col, col + k))
        col += k
    if n == 0 or col == 0:
        return [float("nan")] * len(labelings)
    onehot = np.hstack(onehots)
    sums = np.empty((n, col))  # distance sums of every point to every segment of every labelling
    sq = np.einsum("ij,ij->i", x, x)
    for a in range(0, n, block):
        d = x[a : a + block] @ x.T
        d *= -2.0
        d += sq[a : a + block, None]
        d += sq[None, :]
        np.maximum(d, 0.0, out=d)
        np.sqrt(d, out=d)
        rows = np.arange(a, min(a + block, n))
        d[rows - a, rows] = 0.0  # a point's distance to itself, exactly
        sums[a : a + block] = d @ onehot
    out = []
    for keep, lab, lo, hi in parts:
        k, m = hi - lo, len(lab)
        if not 1 < k < m:
            out.append(float("nan"))
            continue
        seg_sums = sums[keep, lo:hi]
        counts = onehot[:, lo:hi].sum(axis=0)
        idx = np.arange(m)
        own = counts[lab]
        a_ = seg_sums[idx, lab] / np.maximum(own - 1, 1)
        means = seg_sums / counts
        means[idx, lab] = np.inf
        b_ = means.min(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            sil = np.where(own > 1, (b_ - a_) / np.maximum(a_, b_), 0.0)
        out.append(float(np.nan_to_num(sil).mean()))
    return out


def evaluate_labels(
    x: np.ndarray, labels_by_k: dict[int, np.ndarray], *, silhouette_sample: int, seed: int
) -> pd.DataFrame:
    """Inertia (within-segment sum of squares), silhouette (seeded sample, one distance matrix shared by
    every k), Calinski-Harabasz and Davies-Bouldin for each k's labels. Noise (label -1) is left out."""
    rng = np.random.default_rng(seed)
    sil_idx = rng.choice(len(x), size=min(silhouette_sample, len(x)), replace=False) if len(x) else np.array([], int)
    # one pass over the distances for every k: the silhouette's cost is the distances, not the labels
    ks = sorted(labels_by_k)
    sils = silhouettes(x[sil_idx], [labels_by_k[k][sil_idx] for k in ks])
    rows = []
    for k, sil in zip(ks, sils, strict=True):
        labels = labels_by_k[k]
        keep = labels >= 0
        xs, ls = x[keep], labels[keep]
        n_labels = len(np.unique(ls))
        ok = 1 < n_labels < len(ls)
        ch = float(calinski_harabasz_score(xs, ls)) if ok else float("nan")
        db = float(davies_bouldin_score(xs, ls)) if ok else float("nan")
        rows.append((k, within_ss(xs, ls), sil, ch, db))
    return pd.DataFrame(rows, columns=["k", "inertia", "silhouette", "calinski_harabasz", "davies_bouldin"])


def evaluate_k(x: np.ndarray, ks: list[int], *, seed: int, n_init: int, silhouette_sample: int) -> pd.DataFrame:
    """Fit K-Means for each k and compute the four indices (silhouette on a seeded sample)."""
    labels = {k: KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x).labels_ for k in ks if k < len(x)}
    return evaluate_labels(x, labels, silhouette_sample=silhouette_sample, seed=seed)


def gap_statistic(x: np.ndarray, ks: list[int], cluster_all: ClusterAll, *, references: int, seed: int) -> pd.DataFrame:
    """Gap statistic (Tibshirani, Walther & Hastie 2001): ``E*[log W_k] - log W_k`` with ``W_k`` the pooled
    within-segment sum of squares; the expectation is over ``references`` seeded sets drawn uniformly from the
    box aligned with the data's principal axes (their method b). Returns k, gap, gap_se
    (= sd * sqrt(1 + 1/B))."""
    rng = np.random.default_rng(seed)
    mean = x.mean(axis=0)
    xc = x - mean
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    xp = xc @ vt.T
    lo, hi = xp.min(axis=0), xp.max(axis=0)
    data = cluster_all(x, ks, seed)
    log_w = np.array([np.log(max(within_ss(x, data[k]), 1e-300)) for k in ks])
    ref = np.empty((references, len(ks)))
    for b in range(references):
        z = rng.uniform(lo, hi, size=xp.shape) @ vt + mean
        labels = cluster_all(z, ks, seed + 1 + b)
        ref[b] = [np.log(max(within_ss(z, labels[k]), 1e-300)) for k in ks]
    gap = ref.mean(axis=0) - log_w
    se = ref.std(axis=0) * np.sqrt(1 + 1 / references)
    return pd.DataFrame({"k": ks, "gap": gap, "gap_se": se})


def gap_choice(table: pd.DataFrame) -> int:
    """The smallest k with Gap(k) >= Gap(k+1) - s(k+1); the largest gap when no k qualifies."""
    t = table.dropna(subset=["gap"]).sort_values("k").reset_index(drop=True)
    for i in range(len(t) - 1):
        if t.loc[i + 1, "k"] == t.loc[i, "k"] + 1 and t.loc[i, "gap"] >= t.loc[i + 1, "gap"] - t.loc[i + 1, "gap_se"]:
            return int(t.loc[i, "k"])
    return int(t.loc[t["gap"].idxmax(), "k"])


def choose_k(table: pd.DataFrame, forced: int | None = None) -> Selection:
    """Borda count over the indices in ``table``; a forced k is kept but warned about when every index rejects it."""
    t = table.copy().reset_index(drop=True)
    ks = [int(k) for k in t["k"]]
    kn = knee(ks, t["inertia"].tolist())
    n = len(t)
    pts = pd.DataFrame(index=t.index)
    bests: dict[str, int] = {}

    def by_distance(name: str, best: int) -> None:
        pts[name] = (n - 1) - ((t["k"] - best).abs().rank(method="min") - 1)
        bests[name] = best

    by_distance("elbow", kn)
    for col, higher in (("silhouette", True), ("calinski_harabasz", True), ("davies_bouldin", False)):
        if col in t and t[col].notna().any():
            pts[col] = t[col].rank(method="min", ascending=higher) - 1
            bests[col] = int(t.loc[t[col].idxmax() if higher else t[col].idxmin(), "k"])
    gap_k = None
    if "gap" in t and t["gap"].notna().any():
        gap_k = gap_choice(t)
        by_distance("gap", gap_k)
    bic_k = None
    if "bic" in t and t["bic"].notna().any():
        pts["bic"] = t["bic"].rank(method="min", ascending=False) - 1
        bic_k = int(t.loc[t["bic"].idxmin(), "k"])
        bests["bic"] = bic_k
    pts = pts.fillna(0)
    t["points"] = pts.sum(axis=1).astype(int)
    best = t.sort_values(["points", "k"], ascending=[False, True]).iloc[0]
    chosen = int(best["k"])
    detail = "; ".join(f"{INDEX_NAMES[name]} favours k={k}" for name, k in bests.items())
    n_idx = len(bests)
    if forced is not None:
        reason = f"k={forced} was set by hand. For reference: {detail} (combined vote: k={chosen})."
        warning = None
        if forced not in bests.values():
            warning = (
                f"k={forced} was forced, but no index supports it ({detail}); consider k={chosen}, "
                "or keep k for business reasons knowing the segments are less distinct."
            )
        return Selection(t, forced, kn, reason, True, warning, gap_k, bic_k)
    favour = [INDEX_NAMES[name] for name, k in bests.items() if k == chosen]
    row = t.set_index("k").loc[chosen]
    at = [
        f"silhouette {row['silhouette']:.3f}",
        f"Calinski-Harabasz {row['calinski_harabasz']:.0f}",
        f"Davies-Bouldin {row['davies_bouldin']:.3f}",
    ]
    if gap_k is not None:
        at.append(f"gap {row['gap']:.3f} (± {row['gap_se']:.3f})")
    if bic_k is not None:
        at.append(f"BIC {row['bic']:,.0f}")
    reason = (
        f"k={chosen} wins the combined vote of {n_idx} indices ({int(best['points'])} of {n_idx * (n - 1)} points; "
        f"{', '.join(favour) if favour else 'no single index'} {'favour' if len(favour) != 1 else 'favours'} it "
        f"outright): {detail}. At k={chosen}: {', '.join(at)}."
    )
    return Selection(t, chosen, kn, reason, False, None, gap_k, bic_k)


def single_k_selection(table: pd.DataFrame, k: int, reason: str) -> Selection:
    """For algorithms that find k themselves (HDBSCAN, RFM): the indices at that k, for reference."""
    t = table.copy()
    t["points"] = 0
    return Selection(t, k, k, reason, False, None)
