"""Ward agglomerative clustering: exact up to ``exact_limit`` customers, on a seeded sample above it.

Above 3,000 customers the tree is built by the nearest-neighbour chain algorithm on segment centroids (Murtagh
1983; Müllner 2011): memory grows with n x features instead of n², and duplicate customers are merged first as
weights (Ward merges identical points at distance 0 anyway). Smaller inputs use scipy's ``linkage``. The merge
heights equal scipy's ``linkage(x, "ward")`` (tests compare them). One tree gives every k, so k selection costs
one tree, not one fit per k.

Above ``exact_limit`` customers the tree is built on a seeded sample of that size; the other customers are
assigned to the nearest segment centre, and ``fit_info_`` records which was done. ``predict`` always assigns
to the nearest segment centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.cluster.hierarchy import linkage

from shopseg.segment.base import Segmenter, nearest_centre, register, seeded_sample, segment_means

_EPS = np.finfo(np.float64).eps
#: Up to this many rows the tree comes from scipy (n² / 2 distances in memory: 36 MB at 3,000 rows).
SCIPY_LIMIT = 3_000


@dataclass(frozen=True)
class WardTree:
    """Merges of a Ward tree over the unique rows of the data, in merge order (non-decreasing height).

    ``merges[i] = (a, b, height, size)``: clusters ``a`` and ``b`` (ids < ``n_leaves`` are unique rows, id
    ``n_leaves + j`` the cluster made by merge ``j``) joined at ``height`` = sqrt(2 x the increase in the
    within-segment sum of squares), scipy's convention. ``inverse`` maps each input row to its unique row.
    """

    merges: np.ndarray
    n_leaves: int
    inverse: np.ndarray

    def cut(self, ks: list[int]) -> dict[int, np.ndarray]:
        """Labels of the input rows for k segments, for each k (k above the number of unique rows is capped)."""
        n = self.n_leaves
        parent = np.arange(n)

        def find(i: int) -> int:
            root = i
            while parent[root] != root:
                root = int(parent[root])
            while parent[i] != root:
                parent[i], i = root, int(parent[i])
            return root

        rep = np.empty(2 * n - 1 if n > 0 else 0, dtype=np.int64)
        rep[:n] = np.arange(n)
        wanted = {min(max(k, 1), n): k for k in ks}
        out: dict[int, np.ndarray] = {}
        clusters = n
        for j in range(len(self.merges) + 1):
            if clusters in wanted:
                roots = np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)
                _, leaf_labels = np.unique(roots, return_inverse=True)
                labels = leaf_labels[self.inverse]
                for k_cap, k in wanted.items():
                    if k_cap == clusters:
                        out[k] = labels
                if len(out) == len(ks):
                    break
            if j == len(self.merges):
                break
            a, b = int(self.merges[j, 0]), int(self.merges[j, 1])
            ra, rb = find(int(rep[a])), find(int(rep[b]))
            parent[rb] = ra
            rep[n + j] = ra
            clusters -= 1
        return {k: out[k] for k in ks}

    def linkage(self) -> np.ndarray:
        """The tree in scipy's linkage-matrix format (over the unique rows; for scipy.cluster.hierarchy)."""
        z: np.ndarray = self.merges.copy()
        return z


def ward_tree(x: np.ndarray, method: str = "auto") -> WardTree:
    """Exact Ward tree of the rows of ``x`` (see the module docstring); ``method``: auto, scipy or nn-chain."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if len(x) == 0:
        return WardTree(np.zeros((0, 4)), 0, np.zeros(0, dtype=np.int64))
    if method == "scipy" or (method == "auto" and len(x) <= SCIPY_LIMIT):
        # small inputs: scipy's compiled Lance-Williams beats the Python loop; same heights (tests compare)
        return WardTree(linkage(x, method="ward"), len(x), np.arange(len(x), dtype=np.int64))
    uniq, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    raw, n = _nn_chain(uniq, counts.astype(np.float64)), len(uniq)
    return WardTree(_sort_merges(raw, n), n, inverse.reshape(-1).astype(np.int64))


def _nn_chain(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Nearest-neighbour chain on centroids. Returns (id_a, id_b, delta, size) per merge in creation order,
    where delta is the Ward criterion w_a w_b / (w_a + w_b) |c_a - c_b|² and new clusters get ids n, n+1, ….

    Candidates for the nearest neighbour are screened with |c|² - 2 c·c_a + |c_a|² (one matrix-vector
    product) and decided with exactly computed, symmetric distances, so ties and rounding cannot make the
    chain cycle. Merged clusters are compacted away (the active rows stay contiguous)."""
    n, d = x.shape
    c = x.copy()
    w = weights.copy()
    ids = np.arange(n)
    sq = np.einsum("ij,ij->i", c, c)
    sq_max = float(sq.max()) if n else 0.0
    out = np.empty((max(n - 1, 0), 4))
    g = np.empty(n)
    t1 = np.empty(n)
    t2 = np.empty(n)
    chain: list[int] = []
    m, nm, next_id = n, 0, n
    bound = 8.0 * (d + 2) * _EPS
    while m > 1:
        if not chain:
            chain.append(m - 1)
        a = chain[-1]
        ca, wa = c[a], w[a]
        np.dot(c[:m], ca, out=g[:m])
        dist = t1[:m]
        np.multiply(g[:m], -2.0, out=dist)
        dist += sq[:m]
        dist += sq[a]
        wf = t2[:m]
        np.add(w[:m], wa, out=wf)
        np.divide(w[:m], wf, out=wf)
        wf *= wa
        dist *= wf
        dist[a] = np.inf
        tol = 2.0 * wa * bound * (sq_max + sq[a])
        cand = np.flatnonzero(dist <= dist.min() + 2.0 * tol)
        diff = c[cand] - ca
        exact = wf[cand] * np.einsum("ij,ij->i", diff, diff)
        j = int(np.argmin(exact))
        b, best = int(cand[j]), float(exact[j])
        prev = chain[-2] if len(chain) > 1 else -1
        if prev >= 0 and b != prev:
            at = np.flatnonzero(cand == prev)
            if at.size and exact[at[0]] <= best:
                b, best = prev, float(exact[at[0]])
        if b != prev:
            chain.append(b)
            continue
        chain.pop()
        chain.pop()
        lo, hi = (a, b) if a < b else (b, a)
        wn = w[a] + w[b]
        out[nm] = (ids[lo], ids[hi], best, wn)
        nm += 1
        c[lo] = (w[a] * c[a] + w[b] * c[b]) / wn
        w[lo] = wn
        sq[lo] = float(c[lo] @ c[lo])
        sq_max = max(sq_max, float(sq[lo]))
        ids[lo] = next_id
        next_id += 1
        last = m - 1
        if hi != last:
            c[hi], w[hi], sq[hi], ids[hi] = c[last], w[last], sq[last], ids[last]
            chain = [hi if s == last else s for s in chain]
        m -= 1
    return out


def _sort_merges(raw: np.ndarray, n: int) -> np.ndarray:
    """Merges in non-decreasing height (children first), renumbered as scipy does, heights sqrt(2 delta)."""
    if len(raw) == 0:
        return np.zeros((0, 4))
    eff = np.empty(len(raw))
    for i in range(len(raw)):  # a parent is never below its children (guards rounding)
        h = raw[i, 2]
        for child in (int(raw[i, 0]), int(raw[i, 1])):
            if child >= n:
                h = max(h, eff[child - n])
        eff[i] = h
    order = np.lexsort((np.arange(len(raw)), eff))
    new_id = np.empty(len(raw), dtype=np.int64)
    new_id[order] = n + np.arange(len(raw))
    out = np.empty_like(raw)
    for pos, i in enumerate(order):
        a, b = (int(v) if v < n else int(new_id[int(v) - n]) for v in raw[i, :2])
        out[pos] = (min(a, b), max(a, b), np.sqrt(2.0 * eff[i]), raw[i, 3])
    return out


@register
class WardSegmenter(Segmenter):
    """Ward agglomerative segmentation (minimum increase of the within-segment sum of squares)."""

    algorithm = "ward"
    label = "Ward agglomerative clustering"
    exact_predict = False

    def __init__(self, features: list[str], *, exact_limit: int = 20_000, **common: Any) -> None:
        super().__init__(features, **common)
        self.exact_limit = exact_limit

    def _tree(self, x: np.ndarray) -> WardTree:
        cached: tuple[np.ndarray, WardTree] | None = getattr(self, "_tree_cache", None)
        if cached is not None and cached[0] is x:
            return cached[1]
        tree = ward_tree(x)
        self._tree_cache: tuple[np.ndarray, WardTree] | None = (x, tree)
        return tree

    def _cluster_all(self, x: np.ndarray, ks: list[int], seed: int) -> dict[int, np.ndarray]:
        return ward_tree(x).cut(ks)

    def _candidates(self, sel: np.ndarray, ks: list[int]) -> tuple[dict[int, np.ndarray], dict[int, dict[str, float]]]:
        # the selection sample is the whole fit data up to selection_sample customers: one tree for both
        return self._tree(sel).cut(ks), {}

    def _fit_final(self, x: np.ndarray, k: int | None) -> np.ndarray:
        assert k is not None
        n = len(x)
        if n <= self.exact_limit:
            labels = self._tree(x).cut([k])[k]
            self.fit_info_.update(
                ward="exact", fitted_on=n, method=f"Ward agglomerative clustering, exact on all {n:,} customers"
            )
            self.state_ = {"centers": segment_means(x, labels, int(labels.max()) + 1)}
        else:
            idx = seeded_sample(n, self.exact_limit, self.seed + 4)
            xs = x[idx]
            lab_s = self._tree(xs).cut([k])[k]
            centres = segment_means(xs, lab_s, int(lab_s.max()) + 1)
            labels = nearest_centre(x, centres)
            labels[idx] = lab_s
            self.fit_info_.update(
                ward="sampled",
                fitted_on=len(idx),
                method=(
                    f"Ward agglomerative clustering on a seeded sample of {len(idx):,} of {n:,} customers (above the "
                    f"exact limit of {self.exact_limit:,}); the other customers were assigned to the nearest "
                    "segment centre"
                ),
            )
            self.state_ = {"centers": centres}
        self._tree_cache = None
        return labels

    def _assign(self, x: np.ndarray) -> np.ndarray:
        return nearest_centre(x, self.state_["centers"])

    def _resample_labels(
        self, x_fit: np.ndarray, ks: list[int], seed: int, x_eval: np.ndarray
    ) -> dict[int, np.ndarray]:
        cuts = ward_tree(x_fit).cut(ks)
        return {k: nearest_centre(x_eval, segment_means(x_fit, lab, int(lab.max()) + 1)) for k, lab in cuts.items()}
