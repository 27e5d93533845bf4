"""Item-kNN on implicit feedback, with the item-item similarities computed by the ``implicit`` library.

Similarity is cosine or BM25 between products' buyer vectors (binary: did the customer buy it); each product
keeps its ``neighbours`` most similar products. A customer's score for a product is the sum of its similarity
to the customer's ``history_items`` most recent products, each weighted by ``0.5 ** (days since bought /
half_life_days)``.

Determinism: ``implicit``'s ``all_pairs_knn`` computes each product's neighbours independently of the others
and has no random step, so the result does not depend on ``num_threads`` (tested).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from shopseg.errors import ConfigError
from shopseg.recommend.base import Interactions, Rebuy, Recommender, Scores, _select_top, register

__all__ = ["ItemKNN", "item_similarity", "recent_history"]


def item_similarity(
    x: Interactions,
    *,
    similarity: Literal["bm25", "cosine", "cooccurrence"],
    neighbours: int,
    num_threads: int,
    bm25_k1: float = 1.2,
    bm25_b: float = 0.75,
) -> sp.csr_matrix:
    """Products × products similarity, each row holding a product's ``neighbours`` best neighbours (itself
    excluded). ``cooccurrence`` gives raw co-purchase counts (distinct customers)."""
    from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight, normalize

    binary = x.matrix("binary")
    if similarity == "bm25":
        weighted = sp.csr_matrix(bm25_weight(binary.T.tocsr(), K1=bm25_k1, B=bm25_b).T)
    elif similarity == "cosine":
        weighted = sp.csr_matrix(normalize(binary.T.tocsr()).T)
    else:
        weighted = binary.copy()
    weighted.sort_indices()
    model = ItemItemRecommender(K=neighbours + 1, num_threads=num_threads)
    model.fit(sp.csr_matrix(weighted, dtype=np.float64), show_progress=False)
    sim = sp.csr_matrix(model.similarity, dtype=np.float64)
    sim.setdiag(0.0)
    sim.eliminate_zeros()
    # keep at most `neighbours` per row (ties: the smaller product position) for a result independent of
    # the library's heap order
    rows = np.repeat(np.arange(sim.shape[0], dtype=np.int64), np.diff(sim.indptr))
    c, v, _ = _select_top(rows, sim.indices.astype(np.int64), sim.data, sim.shape[0], neighbours)
    keep = c >= 0
    r = np.repeat(np.arange(sim.shape[0]), keep.sum(axis=1))
    out = sp.csr_matrix((v[keep], (r, c[keep])), shape=sim.shape)
    out.sort_indices()
    return out


def recent_history(h: Interactions, items: int | None, half_life_days: float) -> sp.csr_matrix:
    """The customer vectors that neighbour scores start from: each of the ``items`` most recently bought
    products weighted by ``0.5 ** (recency / half_life)``."""
    w = np.power(0.5, h.recency_days / max(half_life_days, 1e-9))
    m = sp.csr_matrix((w, h.orders.indices, h.orders.indptr), shape=h.orders.shape)
    if items is None or m.nnz == 0 or int(np.diff(m.indptr).max()) <= items:
        return m
    lens = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), lens)
    # most recent first within each row (ties: the smaller product position, as the entries are stored in
    # column order and the sort is stable); one float key keeps this a single sort
    key = rows * 1e7 + np.minimum(h.recency_days, 9e6)
    order = np.argsort(key, kind="stable")
    starts = np.repeat(m.indptr[:-1].astype(np.int64), lens)
    keep = np.zeros(m.nnz, dtype=bool)
    keep[order[np.arange(m.nnz) - starts < items]] = True
    counts = np.bincount(rows[keep], minlength=m.shape[0])
    out = sp.csr_matrix((m.data[keep], m.indices[keep], np.concatenate([[0], np.cumsum(counts)])), shape=m.shape)
    return out


@register
class ItemKNN(Recommender):
    """Products similar to the customer's recent purchases (cosine or BM25 item-item similarity)."""

    name: ClassVar[str] = "item_knn"
    description: ClassVar[str] = "products similar (BM25) to the customer's recent purchases"
    cold_start: ClassVar[str] = "empty"
    _sparse: ClassVar[tuple[str, ...]] = ("similarity_",)

    similarity_: sp.csr_matrix | None = None

    def __init__(
        self,
        similarity: Literal["bm25", "cosine"] = "bm25",
        neighbours: int = 100,
        half_life_days: float = 30.0,
        history_items: int | None = 50,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        num_threads: int = 1,
        *,
        rebuy: Rebuy | None = None,
        rebuy_threshold: float | None = None,
    ) -> None:
        super().__init__(rebuy=rebuy, rebuy_threshold=rebuy_threshold)
        self.similarity = similarity
        self.neighbours = neighbours
        self.half_life_days = half_life_days
        self.history_items = history_items
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.num_threads = num_threads

    def _check_params(self) -> None:
        super()._check_params()
        if self.similarity not in ("bm25", "cosine"):
            raise ConfigError(f"similarity must be 'bm25' or 'cosine', got {self.similarity!r}")
        if self.neighbours < 1:
            raise ConfigError(f"neighbours must be at least 1, got {self.neighbours!r}")
        if self.history_items is not None and self.history_items < 1:
            raise ConfigError(f"history_items must be at least 1 (or None), got {self.history_items!r}")
        if self.num_threads < 1:
            raise ConfigError(f"num_threads must be at least 1, got {self.num_threads!r}")

    def _fit(self, x: Interactions) -> None:
        self.similarity_ = item_similarity(
            x,
            similarity=self.similarity,
            neighbours=self.neighbours,
            num_threads=self.num_threads,
            bm25_k1=self.bm25_k1,
            bm25_b=self.bm25_b,
        )

    def neighbour_scores(self, h: Interactions) -> sp.csr_matrix:
        """Customers × products: similarity to the recent purchases."""
        assert self.similarity_ is not None
        m = sp.csr_matrix(recent_history(h, self.history_items, self.half_life_days) @ self.similarity_)
        m.eliminate_zeros()
        return m

    def _scores(self, h: Interactions) -> Scores:
        m = self.neighbour_scores(h)
        return Scores(personal=m, parts={"similar_items": m}, source="similar_items")

    def _similarity(self) -> sp.csr_matrix | None:
        return self.similarity_
