"""Popularity: the products most customers bought (global), or most customers bought recently (trending)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from shopseg.errors import ConfigError
from shopseg.recommend.base import FloatArray, Interactions, Rebuy, Recommender, Scores, register

__all__ = ["Popularity", "Trending"]


@register
class Popularity(Recommender):
    """Every customer gets the products with the most distinct buyers (score: share of customers who bought it).

    Bought products follow the re-buy policy (default ``"often"``)."""

    name: ClassVar[str] = "popularity"
    description: ClassVar[str] = "global top products by number of buyers"
    _arrays: ClassVar[tuple[str, ...]] = ("prior_",)
    history_free: ClassVar[bool] = True

    prior_: FloatArray | None = None

    def __init__(self, *, rebuy: Rebuy | None = None, rebuy_threshold: float | None = None) -> None:
        super().__init__(rebuy=rebuy, rebuy_threshold=rebuy_threshold)

    def _fit(self, x: Interactions) -> None:
        self.prior_ = self.buyers_ / max(x.n_customers, 1)

    def _scores(self, h: Interactions) -> Scores:
        assert self.prior_ is not None
        return Scores(prior=self.prior_[None, :], source=self.name)


@register
class Trending(Recommender):
    """The products with the most distinct buyers in the last ``window_days`` before the fit's ``as_of``
    (score: share of the recently active customers who bought it; ties by overall buyers)."""

    name: ClassVar[str] = "trending"
    description: ClassVar[str] = "top products by buyers in a recent window"
    _arrays: ClassVar[tuple[str, ...]] = ("prior_",)
    history_free: ClassVar[bool] = True

    prior_: FloatArray | None = None

    def __init__(
        self, window_days: float = 14.0, *, rebuy: Rebuy | None = None, rebuy_threshold: float | None = None
    ) -> None:
        super().__init__(rebuy=rebuy, rebuy_threshold=rebuy_threshold)
        self.window_days = window_days

    def _check_params(self) -> None:
        super()._check_params()
        if not self.window_days > 0:
            raise ConfigError(f"window_days must be positive, got {self.window_days!r}")

    def _fit(self, x: Interactions) -> None:
        recent = x.recency_days < self.window_days
        cols = x.orders.indices[recent]
        counts = np.bincount(cols, minlength=x.n_products).astype(np.float64)
        rows = np.repeat(np.arange(x.n_customers), np.diff(x.orders.indptr))[recent]
        active = max(len(np.unique(rows)), 1)
        # overall buyers break ties (far below one recent buyer)
        self.prior_ = counts / active + 1e-6 * self.buyers_ / max(float(self.buyers_.max(initial=0.0)), 1.0) / active

    def _scores(self, h: Interactions) -> Scores:
        assert self.prior_ is not None
        return Scores(prior=self.prior_[None, :], source=self.name)
