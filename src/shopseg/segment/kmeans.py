"""K-Means (k-means++, several inits) and mini-batch K-Means for very large shops."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans

from shopseg.segment.base import Segmenter, nearest_centre, register

#: The final fit switches to mini-batch K-Means above this many customers. Measured on 1M x 30 features
#: (bench/bench_segment.py), full-batch K-Means is still the faster and better choice there, so the default is
#: high; mini-batch bounds the work per iteration for shops beyond it.
MINIBATCH_THRESHOLD = 5_000_000


@register
class KMeansSegmenter(Segmenter):
    """Preprocess, choose k (unless given), fit K-Means with k-means++ and several inits; labels ordered by size.

    Parameters are stored unchanged by ``__init__``; ``fit`` sets ``preprocessor_``, ``centers_``, ``k_``,
    ``selection_``, ``stability_``, ``inertia_`` and ``labels_``. k is chosen on a seeded sample with
    ``min(n_init, 3)`` inits per k; the final fit uses everyone and ``n_init`` inits, or mini-batch K-Means above
    ``minibatch_threshold`` customers.
    """

    algorithm = "kmeans"
    label = "K-Means (k-means++)"

    def __init__(
        self,
        features: list[str],
        *,
        n_init: int = 10,
        minibatch_threshold: int = MINIBATCH_THRESHOLD,
        batch_size: int = 4096,
        **common: Any,
    ) -> None:
        super().__init__(features, **common)
        self.n_init = n_init
        self.minibatch_threshold = minibatch_threshold
        self.batch_size = batch_size

    inertia_: float

    def _selection_inits(self) -> int:
        return max(1, min(self.n_init, 3))

    def _cluster_all(self, x: np.ndarray, ks: list[int], seed: int) -> dict[int, np.ndarray]:
        n_init = self._selection_inits()
        return {k: KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(x).labels_ for k in ks}

    def _cluster_quick(self, x: np.ndarray, ks: list[int], seed: int) -> dict[int, np.ndarray]:
        return {k: KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x).labels_ for k in ks}

    def _use_minibatch(self, n: int) -> bool:
        return n > self.minibatch_threshold

    def _fit_final(self, x: np.ndarray, k: int | None) -> np.ndarray:
        assert k is not None
        km: KMeans | MiniBatchKMeans
        if self._use_minibatch(len(x)):
            km = MiniBatchKMeans(
                n_clusters=k, n_init=self._selection_inits(), batch_size=self.batch_size, random_state=self.seed
            ).fit(x)
            self.fit_info_.update(
                method=f"mini-batch K-Means (batches of {self.batch_size:,}, {self._selection_inits()} inits)",
                minibatch=True,
            )
        else:
            km = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.seed).fit(x)
            self.fit_info_.update(method=f"K-Means (k-means++, {self.n_init} inits)", minibatch=False)
        self.state_ = {"centers": np.asarray(km.cluster_centers_, dtype=np.float64)}
        self.inertia_ = float(km.inertia_)
        labels: np.ndarray = np.asarray(km.labels_, dtype=np.int64)
        return labels

    def _n_slots(self, raw: np.ndarray) -> int:
        return len(self.state_["centers"])

    def _assign(self, x: np.ndarray) -> np.ndarray:
        return nearest_centre(x, self.state_["centers"])

    def _resample_labels(
        self, x_fit: np.ndarray, ks: list[int], seed: int, x_eval: np.ndarray
    ) -> dict[int, np.ndarray]:
        out = {}
        for k in ks:
            # one k-means++ init per refit: 20 resamples x every k stays affordable (inits vary with the seed)
            km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(x_fit)
            out[k] = nearest_centre(x_eval, km.cluster_centers_)
        return out

    def _state_json(self) -> dict[str, Any]:
        return {"inertia": self.inertia_}

    def _load_state_json(self, state: dict[str, Any]) -> None:
        self.inertia_ = float(state.get("inertia") or np.nan)


@register
class MiniBatchKMeansSegmenter(KMeansSegmenter):
    """K-Means whose final fit is always mini-batch (k is still chosen with full K-Means on the sample)."""

    algorithm = "minibatch"
    label = "mini-batch K-Means"

    def _use_minibatch(self, n: int) -> bool:
        return True
