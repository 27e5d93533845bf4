"""HDBSCAN (scikit-learn's): dense groups become segments, the rest is noise, labelled -1 "unassigned".

k is found by the algorithm. Above ``fit_sample`` customers it runs on a seeded sample of that size.
scikit-learn's HDBSCAN has no ``predict``; the saved model keeps the clustered training customers, their core
distances (distance to the ``min_samples``-th neighbour) and, per segment, its *reach*: the largest core
distance of its members, i.e. the lowest density the segment admitted. A new customer is attached to the
segment of its nearest clustered training customer when their mutual reachability distance (the largest of the
two core distances and their distance) is within that segment's reach — it is as dense there as the segment's
own members — and is unassigned otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.cluster import HDBSCAN
from sklearn.neighbors import NearestNeighbors

from shopseg.segment.base import NOISE, NOISE_NAME, Segmenter, register, seeded_sample


@register
class HDBSCANSegmenter(Segmenter):
    """Density-based segmentation; noise customers are labelled -1 and named "unassigned"."""

    algorithm = "hdbscan"
    label = "HDBSCAN"
    chooses_k = False
    exact_predict = False
    resampling = "subsample"

    def __init__(
        self,
        features: list[str],
        *,
        min_cluster_size: int | None = None,
        min_samples: int | None = None,
        fit_sample: int = 20_000,
        **common: Any,
    ) -> None:
        super().__init__(features, **common)
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.fit_sample = fit_sample

    def _sizes(self, n: int) -> tuple[int, int]:
        """min_cluster_size (default: 2 % of the customers, at least 10) and min_samples (default: 5, at most
        min_cluster_size; scikit-learn's default of min_cluster_size left 70 % of a real shop unassigned)."""
        mcs = self.min_cluster_size if self.min_cluster_size is not None else max(10, round(0.02 * n))
        mcs = max(2, min(mcs, n))
        ms = self.min_samples if self.min_samples is not None else min(5, mcs)
        return mcs, max(1, min(ms, n))

    def _run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels and core distances of ``x``."""
        mcs, ms = self._sizes(len(x))
        labels = np.asarray(HDBSCAN(min_cluster_size=mcs, min_samples=ms, copy=True).fit(x).labels_, dtype=np.int64)
        # core distance as HDBSCAN defines it: distance to the min_samples-th neighbour, the point itself included
        dist, _ = NearestNeighbors(n_neighbors=ms).fit(x).kneighbors(x)
        return labels, dist[:, -1]

    def _fit_final(self, x: np.ndarray, k: int | None) -> np.ndarray:
        n = len(x)
        idx = seeded_sample(n, self.fit_sample, self.seed + 4)
        xs = x[idx]
        lab_s, core = self._run(xs)
        keep = lab_s >= 0
        if not keep.any():
            from shopseg.errors import DataError

            raise DataError(
                f"HDBSCAN found no dense group among {len(xs):,} customers (min_cluster_size "
                f"{self._sizes(len(xs))[0]}); lower segment.hdbscan_min_cluster_size or choose another algorithm"
            )
        mcs, ms = self._sizes(len(xs))
        self._ms = ms
        self.state_ = {
            "points": xs[keep],
            "point_labels": lab_s[keep],
            "core_distances": core[keep],
            "reach": _reach(lab_s[keep], core[keep]),
        }
        sampled = len(idx) < n
        if sampled:
            labels = self._assign(x)
            labels[idx] = lab_s
        else:
            labels = lab_s
        self.fit_info_.update(
            method=f"HDBSCAN (min_cluster_size {mcs}, min_samples {ms})"
            + (f" on a seeded sample of {len(idx):,} of {n:,} customers" if sampled else ""),
            min_cluster_size=mcs,
            min_samples=ms,
            sampled=sampled,
            fitted_on=len(idx),
        )
        self.segment_names_[NOISE] = NOISE_NAME
        return labels

    def _permute(self, order: np.ndarray, remap: np.ndarray) -> None:
        super()._permute(order, remap)
        self.state_["point_labels"] = remap[self.state_["point_labels"]]

    def _per_segment_arrays(self) -> list[str]:
        return ["reach", *super()._per_segment_arrays()]

    def _assign(self, x: np.ndarray) -> np.ndarray:
        st = self.state_
        return _attach(st["points"], st["point_labels"], st["core_distances"], st["reach"], self._ms, x)

    def _k_reason(self) -> str:
        mcs = self.fit_info_.get("min_cluster_size")
        return (
            f"HDBSCAN finds k itself: {self.k_} dense group{'s' if self.k_ != 1 else ''} of at least {mcs} customers; "
            f"{self.noise_share_:.1%} of the customers lie in no dense group and are labelled '{NOISE_NAME}' (-1). "
            "The indices below are computed without them."
        )

    def _resample_labels(
        self, x_fit: np.ndarray, ks: list[int], seed: int, x_eval: np.ndarray
    ) -> dict[int, np.ndarray]:
        lab, core = self._run(x_fit)
        keep = lab >= 0
        out = np.full(len(x_eval), NOISE, dtype=np.int64)
        if keep.any():
            ms = self._sizes(len(x_fit))[1]
            out = _attach(x_fit[keep], lab[keep], core[keep], _reach(lab[keep], core[keep]), ms, x_eval)
        return {k: out for k in ks}

    def _state_json(self) -> dict[str, Any]:
        return {"min_samples": self._ms}

    def _load_state_json(self, state: dict[str, Any]) -> None:
        self._ms = int(state["min_samples"])


def _reach(labels: np.ndarray, core: np.ndarray) -> np.ndarray:
    """Per segment: the largest core distance of its members."""
    out = np.zeros(int(labels.max()) + 1 if len(labels) else 0)
    np.maximum.at(out, labels, core)
    return out


def _attach(
    points: np.ndarray, labels: np.ndarray, core: np.ndarray, reach: np.ndarray, min_samples: int, x: np.ndarray
) -> np.ndarray:
    """Segment of the nearest clustered point when the mutual reachability distance is within the segment's
    reach; -1 otherwise (see the module docstring)."""
    if len(points) == 0:
        return np.full(len(x), NOISE, dtype=np.int64)
    k = max(1, min(min_samples, len(points)))
    dist, nn = NearestNeighbors(n_neighbors=k).fit(points).kneighbors(x)
    nearest = nn[:, 0]
    own_core = dist[:, -1]  # the new customer's core distance among the clustered customers
    mutual = np.maximum(np.maximum(own_core, core[nearest]), dist[:, 0])
    seg = labels[nearest]
    out: np.ndarray = np.where(mutual <= reach[seg], seg, NOISE).astype(np.int64)
    return out
