"""The blend: personal signals on top of the segment prior, with cold starts falling back to the segment and
then to popularity.

For a customer with history, the score of a product is

    own(c, p) + neighbour_weight * neighbours(c, p) + trending_weight * trending(p) + segment_weight * segment(s, p)

* ``own``: the customer's recency-weighted orders of the product (each order counts ``0.5 ** (age /
  half-life)``, the half-life of the :class:`Interactions`), divided by the customer's largest such value;
* ``neighbours``: item-kNN (BM25) scores of the product from the customer's recent purchases, divided by the
  customer's largest;
* ``trending``: buyers of the product in the last ``trending_days``, divided by the largest;
* ``segment``: share of the customer's segment who bought the product, divided by the largest (the whole
  population's share when the segment is unknown).

A customer without history gets the segment's top products, or the most popular when the segment is unknown
too. Bought products may be recommended again by default (``rebuy="always"``): on the shops measured most
purchases are re-purchases (see ``bench/RESULTS.md``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from shopseg.errors import ConfigError
from shopseg.recommend.base import (
    IntArray,
    Interactions,
    Rebuy,
    Recommender,
    Scores,
    normalise,
    register,
    row_normalise,
)
from shopseg.recommend.knn import ItemKNN
from shopseg.recommend.popularity import Trending
from shopseg.recommend.segment import SegmentTop

__all__ = ["Blend"]


@register
class Blend(Recommender):
    """Own history + item neighbours + trending + segment prior (see the module docstring)."""

    name: ClassVar[str] = "blend"
    description: ClassVar[str] = (
        "own recency-weighted history + neighbours of recent purchases + trending + segment prior"
    )
    default_rebuy: ClassVar[Rebuy] = "always"
    _children: ClassVar[tuple[str, ...]] = ("knn", "trending_", "segment_")

    trending_: Trending
    segment_: SegmentTop

    def __init__(
        self,
        neighbour_weight: float = 0.3,
        trending_weight: float = 0.3,
        segment_weight: float = 0.05,
        trending_days: float = 14.0,
        knn: ItemKNN | None = None,
        *,
        rebuy: Rebuy | None = None,
        rebuy_threshold: float | None = None,
    ) -> None:
        super().__init__(rebuy=rebuy, rebuy_threshold=rebuy_threshold)
        self.neighbour_weight = neighbour_weight
        self.trending_weight = trending_weight
        self.segment_weight = segment_weight
        self.trending_days = trending_days
        self.knn = knn

    def _check_params(self) -> None:
        super()._check_params()
        for name in ("neighbour_weight", "trending_weight", "segment_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)!r}")
        if self.knn is not None and not isinstance(self.knn, ItemKNN):
            raise ConfigError(f"knn must be an ItemKNN, got {type(self.knn).__name__}")

    def _fit(self, x: Interactions) -> None:
        knn = self.knn if self.knn is not None else ItemKNN()
        # an ItemKNN already fitted on these very interactions is reused (the pipeline evaluates both)
        if not (knn.history_ is x and knn.similarity_ is not None):
            knn.fit(x)
        self.knn = knn
        self.trending_ = Trending(self.trending_days).fit(x)
        self.segment_ = SegmentTop().fit(x)

    def _scores(self, h: Interactions) -> Scores:
        assert self.knn is not None
        seg_rows, pop_share = self.segment_._rows()
        trend = normalise(self.trending_.prior_ if self.trending_.prior_ is not None else np.zeros(len(pop_share)))
        seg_n = np.vstack([normalise(r) for r in seg_rows]) if len(seg_rows) else np.zeros((0, len(pop_share)))
        pop_n = normalise(pop_share)
        k = len(seg_n)
        # groups: 0..k-1 segment s with history, k unknown segment with history, k+1..2k cold start in segment
        # s, 2k+1 cold start with unknown segment
        warm = self.trending_weight * trend[None, :] + self.segment_weight * np.vstack([seg_n, pop_n[None, :]])
        cold = np.vstack([seg_n, pop_n[None, :]])
        prior = np.vstack([warm, cold])
        grp = self._groups(h, k)
        own = row_normalise(
            sp.csr_matrix((h.weight.astype(np.float64), h.orders.indices, h.orders.indptr), shape=h.orders.shape),
            copy=False,
        )
        nb = row_normalise(self.knn.neighbour_scores(h), scale=self.neighbour_weight, copy=False)
        personal = sp.csr_matrix(own + nb)
        names = ["trending"] * (k + 1) + ["segment_top"] * k + ["popularity"]
        return Scores(
            personal=personal,
            prior=prior,
            group=grp,
            parts={"own_history": own, "similar_items": nb},
            prior_source=names,
            source=self.name,
        )

    def _groups(self, h: Interactions, k: int) -> IntArray:
        ids = self.segment_.segment_ids_
        assert ids is not None
        seg = h.segments if h.segments is not None else np.full(h.n_customers, -1, dtype=np.int64)
        if len(ids):
            pos = np.minimum(np.searchsorted(ids, seg), len(ids) - 1)
            known = ids[pos] == seg
        else:
            pos = np.zeros(len(seg), dtype=np.int64)
            known = np.zeros(len(seg), dtype=bool)
        base = np.where(known, pos, k).astype(np.int64)
        has_history = np.diff(h.orders.indptr) > 0
        return np.where(has_history, base, base + k + 1)

    def _similarity(self) -> sp.csr_matrix | None:
        assert self.knn is not None
        return self.knn.similarity_
