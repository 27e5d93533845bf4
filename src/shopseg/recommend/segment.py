"""The classic approach: each segment's top products, ranked by buyers or by lift against the population."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from shopseg.errors import ConfigError
from shopseg.recommend.base import FloatArray, IntArray, Interactions, Rebuy, Recommender, Scores, register

__all__ = ["SegmentTop"]


@register
class SegmentTop(Recommender):
    """Each customer gets the top products of their segment.

    ``rank_by="buyers"``: share of the segment's customers who bought the product; ``rank_by="lift"``: that
    share divided by the share among all customers, for products with at least ``min_buyers`` buyers in the
    segment (others rank after them by buyers). Customers with an unknown segment (-1) get the population's
    top products. Segments come from ``Interactions.segments`` (fit) and the ``segments`` argument of
    ``recommend`` (or the history's segments)."""

    name: ClassVar[str] = "segment_top"
    description: ClassVar[str] = "the customer's segment's top products by number of buyers"
    _arrays: ClassVar[tuple[str, ...]] = ("segment_ids_", "segment_buyers_", "segment_size_")
    history_free: ClassVar[bool] = True

    segment_ids_: IntArray | None = None
    segment_buyers_: FloatArray | None = None
    segment_size_: FloatArray | None = None

    def __init__(
        self,
        rank_by: Literal["buyers", "lift"] = "buyers",
        min_buyers: int = 5,
        *,
        rebuy: Rebuy | None = None,
        rebuy_threshold: float | None = None,
    ) -> None:
        super().__init__(rebuy=rebuy, rebuy_threshold=rebuy_threshold)
        self.rank_by = rank_by
        self.min_buyers = min_buyers

    def _check_params(self) -> None:
        super()._check_params()
        if self.rank_by not in ("buyers", "lift"):
            raise ConfigError(f"rank_by must be 'buyers' or 'lift', got {self.rank_by!r}")
        if self.min_buyers < 1:
            raise ConfigError(f"min_buyers must be at least 1, got {self.min_buyers!r}")

    def _fit(self, x: Interactions) -> None:
        seg = x.segments if x.segments is not None else np.full(x.n_customers, -1, dtype=np.int64)
        ids = np.unique(seg[seg >= 0])
        binary = x.matrix("binary")
        buyers = np.zeros((len(ids), x.n_products))
        sizes = np.zeros(len(ids))
        for j, s in enumerate(ids):
            rows = seg == s
            buyers[j] = np.asarray(binary[rows].sum(axis=0)).ravel()
            sizes[j] = float(rows.sum())
        self.segment_ids_ = ids.astype(np.int64)
        self.segment_buyers_ = buyers
        self.segment_size_ = sizes

    def _rows(self) -> tuple[FloatArray, FloatArray]:
        """Per-segment prior rows (segments × products) and the population row."""
        assert self.segment_buyers_ is not None and self.segment_size_ is not None
        pop_share = self.buyers_ / max(self.n_customers_, 1)
        share = self.segment_buyers_ / np.maximum(self.segment_size_, 1)[:, None]
        if self.rank_by == "buyers":
            return share, pop_share
        lift = np.divide(share, pop_share[None, :], out=np.zeros_like(share), where=pop_share[None, :] > 0)
        enough = self.segment_buyers_ >= self.min_buyers
        # products with too few buyers in the segment rank after every lift-ranked one, by buyer share
        top = float(lift[enough].max(initial=0.0)) + 1.0
        rows = np.where(enough, top + lift, share)
        pop_rows = pop_share
        return rows, pop_rows

    def _scores(self, h: Interactions) -> Scores:
        assert self.segment_ids_ is not None
        rows, pop = self._rows()
        prior = np.vstack([rows, pop[None, :]]) if len(rows) else pop[None, :]
        seg = h.segments if h.segments is not None else np.full(h.n_customers, -1, dtype=np.int64)
        pos = np.searchsorted(self.segment_ids_, seg)
        pos = np.minimum(pos, max(len(self.segment_ids_) - 1, 0))
        known = (
            (len(self.segment_ids_) > 0) & (self.segment_ids_[pos] == seg)
            if len(self.segment_ids_)
            else np.zeros(len(seg), bool)
        )
        grp = np.where(known, pos, len(self.segment_ids_)).astype(np.int64)
        names = [self.name] * len(self.segment_ids_) + ["popularity"]
        return Scores(prior=prior, group=grp, prior_source=names, source=self.name)

    def top_products(self, n: int = 10) -> pd.DataFrame:
        """Each segment's top ``n`` products: segment, rank, product_id, buyers, buyer_share, lift."""
        assert self.segment_ids_ is not None and self.segment_buyers_ is not None and self.segment_size_ is not None
        assert self.products_ is not None
        rows, _ = self._rows()
        pop_share = self.buyers_ / max(self.n_customers_, 1)
        out = []
        for j, s in enumerate(self.segment_ids_):
            order = np.lexsort((np.arange(len(rows[j])), -rows[j]))[:n]
            order = order[self.segment_buyers_[j, order] > 0]
            share = self.segment_buyers_[j, order] / max(self.segment_size_[j], 1)
            out.append(
                pd.DataFrame(
                    {
                        "segment": int(s),
                        "rank": np.arange(1, len(order) + 1),
                        "product_id": self.products_[order],
                        "buyers": self.segment_buyers_[j, order].astype(np.int64),
                        "buyer_share": share,
                        "lift": np.divide(
                            share, pop_share[order], out=np.zeros_like(share), where=pop_share[order] > 0
                        ),
                    }
                )
            )
        cols = ["segment", "rank", "product_id", "buyers", "buyer_share", "lift"]
        return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=cols)
