"""Choosing k from four indices together: the elbow (knee of inertia), silhouette, Calinski-Harabasz and
Davies-Bouldin. Each index ranks the candidate k; the ranks are added (a Borda count) and the best total wins,
ties going to the smaller k. The reason is stated in words.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, pairwise_distances, silhouette_score


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
    table: pd.DataFrame  # k, inertia, silhouette, calinski_harabasz, davies_bouldin, points
    chosen: int
    knee: int
    reason: str
    forced: bool
    warning: str | None


def evaluate_k(x: np.ndarray, ks: list[int], *, seed: int, n_init: int, silhouette_sample: int) -> pd.DataFrame:
    """Fit K-Means for each k and compute the four indices (silhouette on a seeded sample)."""
    rng = np.random.default_rng(seed)
    sil_idx = rng.choice(len(x), size=min(silhouette_sample, len(x)), replace=False) if len(x) else np.array([])
    # one distance matrix for every k: the silhouette's cost is the distances, not the labels
    dist = pairwise_distances(x[sil_idx]) if len(sil_idx) else np.zeros((0, 0))
    rows = []
    for k in ks:
        if k >= len(x):
            break
        km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x)
        labels = km.labels_
        n_labels = len(np.unique(labels))
        sil = (
            float(silhouette_score(dist, labels[sil_idx], metric="precomputed"))
            if n_labels > 1 and len(np.unique(labels[sil_idx])) > 1
            else float("nan")
        )
        ch = float(calinski_harabasz_score(x, labels)) if n_labels > 1 else float("nan")
        db = float(davies_bouldin_score(x, labels)) if n_labels > 1 else float("nan")
        rows.append((k, float(km.inertia_), sil, ch, db))
    return pd.DataFrame(rows, columns=["k", "inertia", "silhouette", "calinski_harabasz", "davies_bouldin"])


def choose_k(table: pd.DataFrame, forced: int | None = None) -> Selection:
    """Borda count over the four indices; a forced k is kept but warned about when every index rejects it."""
    t = table.copy()
    ks = [int(k) for k in t["k"]]
    kn = knee(ks, t["inertia"].tolist())
    n = len(t)
    pts = pd.DataFrame(index=t.index)
    pts["elbow"] = (n - 1) - (t["k"] - kn).abs().rank(method="min") + 1
    pts["silhouette"] = t["silhouette"].rank(method="min", ascending=True) - 1
    pts["calinski_harabasz"] = t["calinski_harabasz"].rank(method="min", ascending=True) - 1
    pts["davies_bouldin"] = t["davies_bouldin"].rank(method="min", ascending=False) - 1
    pts = pts.fillna(0)
    t["points"] = pts.sum(axis=1).astype(int)
    best = t.sort_values(["points", "k"], ascending=[False, True]).iloc[0]
    chosen = int(best["k"])
    bests = {
        "elbow": kn,
        "silhouette": int(t.loc[t["silhouette"].idxmax(), "k"]) if t["silhouette"].notna().any() else chosen,
        "Calinski-Harabasz": int(t.loc[t["calinski_harabasz"].idxmax(), "k"]),
        "Davies-Bouldin": int(t.loc[t["davies_bouldin"].idxmin(), "k"]),
    }
    favour = [name for name, k in bests.items() if k == chosen]
    detail = "; ".join(f"{name} favours k={k}" for name, k in bests.items())
    warning = None
    if forced is not None:
        reason = f"k={forced} was set by hand. For reference: {detail} (combined vote: k={chosen})."
        if forced not in bests.values():
            warning = (
                f"k={forced} was forced, but no index supports it ({detail}); consider k={chosen}, "
                "or keep k for business reasons knowing the segments are less distinct."
            )
        return Selection(t, forced, kn, reason, True, warning)
    row = t.set_index("k").loc[chosen]
    reason = (
        f"k={chosen} wins the combined vote of four indices ({int(best['points'])} of {4 * (n - 1)} points; "
        f"{', '.join(favour) if favour else 'no single index'} {'favour' if len(favour) != 1 else 'favours'} it "
        f"outright): {detail}. At k={chosen}: silhouette {row['silhouette']:.3f}, Calinski-Harabasz "
        f"{row['calinski_harabasz']:.0f}, Davies-Bouldin {row['davies_bouldin']:.3f}."
    )
    return Selection(t, chosen, kn, reason, False, None)
