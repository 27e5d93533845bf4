"""The customer's own history: the products they bought most (the strong baseline of shops where most
purchases are re-purchases)."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from shopseg.errors import ConfigError
from shopseg.recommend.base import Interactions, Rebuy, Recommender, Scores, register

__all__ = ["OwnHistory"]


@register
class OwnHistory(Recommender):
    """The customer's own products, by number of orders (ties: the more recent) or, with
    ``score="weighted"``, by recency-weighted orders (each order counts ``0.5 ** (age / half-life)``).

    It can only recommend products the customer bought, so it needs ``rebuy="always"`` (its default) and has
    nothing for cold starts or for the new-items evaluation."""

    name: ClassVar[str] = "own_history"
    description: ClassVar[str] = "the customer's own most-bought products (by number of orders)"
    cold_start: ClassVar[str] = "empty"
    default_rebuy: ClassVar[Rebuy] = "always"
    only_bought: ClassVar[bool] = True

    def __init__(
        self,
        score: Literal["orders", "weighted"] = "orders",
        *,
        rebuy: Rebuy | None = None,
        rebuy_threshold: float | None = None,
    ) -> None:
        super().__init__(rebuy=rebuy, rebuy_threshold=rebuy_threshold)
        self.score = score

    def _check_params(self) -> None:
        super()._check_params()
        if self.score not in ("orders", "weighted"):
            raise ConfigError(f"score must be 'orders' or 'weighted', got {self.score!r}")

    def _scores(self, h: Interactions) -> Scores:
        if self.score == "orders":
            # recency breaks ties between equal order counts (a fraction of one order)
            data = h.orders.data + 0.5 / (1.0 + h.recency_days)
        else:
            data = h.weight.copy()
        m = sp.csr_matrix((np.asarray(data, dtype=np.float64), h.orders.indices, h.orders.indptr), shape=h.orders.shape)
        return Scores(personal=m, parts={self.name: m}, source=self.name)
