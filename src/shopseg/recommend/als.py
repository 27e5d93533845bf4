"""Matrix factorisation on implicit feedback with the ``implicit`` library: ALS and BPR.

**Confidence.** ALS learns from a confidence per (customer, product): ``alpha * value`` where value is the
number of orders (``confidence="orders"``), ``log1p(quantity)`` (``"quantity"``) or the recency-weighted orders
(``"recency"``, default: each order counts ``0.5 ** (age / half-life)``). BPR learns which products each
customer bought (implicit's BPR samples positive pairs and ignores their values).

**Threads and determinism.** ``num_threads`` is always passed explicitly (never 0 = "all cores"). Both
models start from factors drawn from ``numpy.random.default_rng(random_state)``. ALS then updates every
customer's factors from the products' factors (and back) independently of the others, so its result does not
depend on the number of threads: fitting twice gives identical factors (tested). BPR is stochastic gradient
descent; with more than one thread the updates race (Hogwild) and runs differ, so :class:`BPR` always trains
with one thread. OpenBLAS' own thread pool is limited to one thread while these models fit
(``threadpoolctl``), as implicit recommends.

**Customers the model was not fitted on** (e.g. when it was fitted on a sample): ALS solves their factors
exactly from the products' factors (the same least-squares step as training); BPR uses the mean of the
factors of the products they bought, an approximation.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shopseg.errors import ConfigError
from shopseg.recommend.base import (
    Interactions,
    Rebuy,
    Recommender,
    Scores,
    StrArray,
    _codes,
    register,
)

__all__ = ["ALS", "BPR"]


def _blas_single() -> Any:
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


class _Factorisation(Recommender):
    kind: ClassVar[str] = "dense"
    cold_start: ClassVar[str] = "prior"
    _arrays: ClassVar[tuple[str, ...]] = ("item_factors_", "user_factors_", "fit_customers_")

    item_factors_: npt.NDArray[np.float32] | None = None
    user_factors_: npt.NDArray[np.float32] | None = None
    fit_customers_: StrArray | None = None

    def _check_common(self, factors: int, iterations: int, num_threads: int) -> None:
        if factors < 1 or iterations < 1 or num_threads < 1:
            raise ConfigError(
                f"factors, iterations and num_threads must be at least 1, got {factors}, {iterations}, {num_threads}"
            )

    def _fold_in(self, h: Interactions) -> npt.NDArray[np.float32]:
        raise NotImplementedError

    def _user_vectors(self, h: Interactions) -> npt.NDArray[np.float32]:
        assert self.fit_customers_ is not None and self.user_factors_ is not None
        codes = _codes(self.fit_customers_, h.customers)
        out = np.zeros((h.n_customers, self.user_factors_.shape[1]), dtype=np.float32)
        known = codes >= 0
        out[known] = self.user_factors_[codes[known]]
        todo = np.flatnonzero(~known & (np.diff(h.orders.indptr) > 0))
        if len(todo):
            out[todo] = self._fold_in(h.rows(todo))
        return out

    def _scores(self, h: Interactions) -> Scores:
        assert self.item_factors_ is not None
        users = self._user_vectors(h)
        dense = users @ self.item_factors_.T
        # cold starts (no history): the most popular products
        cold = np.diff(h.orders.indptr) == 0
        if cold.any():
            dense[cold] = (self.buyers_ / max(float(self.buyers_.max(initial=0.0)), 1.0)).astype(np.float32)
        # scores can be negative: shift each row so that the engine's ">= 0" convention holds
        dense = dense - np.minimum(dense.min(axis=1, keepdims=True), 0)
        return Scores(dense=dense, source=self.name)

    def _similarity(self) -> sp.csr_matrix | None:
        assert self.item_factors_ is not None
        f = self.item_factors_.astype(np.float64)
        norms = np.linalg.norm(f, axis=1)
        f = f / np.maximum(norms, 1e-12)[:, None]
        sims = f @ f.T
        np.fill_diagonal(sims, 0.0)
        k = min(100, sims.shape[1] - 1) if sims.shape[1] > 1 else 0
        if k <= 0:
            return sp.csr_matrix(sims.shape)
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        rows = np.repeat(np.arange(sims.shape[0]), k)
        vals = np.take_along_axis(sims, part, axis=1).ravel()
        keep = vals > 0
        return sp.csr_matrix((vals[keep], (rows[keep], part.ravel()[keep])), shape=sims.shape)


@register
class ALS(_Factorisation):
    """Implicit ALS (Hu, Koren & Volinsky) with confidence from orders, quantity or recency."""

    name: ClassVar[str] = "als"
    description: ClassVar[str] = "matrix factorisation (implicit ALS, confidence from recency-weighted orders)"

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 0.05,
        alpha: float = 5.0,
        confidence: Literal["orders", "quantity", "recency"] = "recency",
        num_threads: int = 1,
        random_state: int = 0,
        *,
        rebuy: Rebuy | None = None,
        rebuy_threshold: float | None = None,
    ) -> None:
        super().__init__(rebuy=rebuy, rebuy_threshold=rebuy_threshold)
        self.factors = factors
        self.iterations = iterations
        self.regularization = regularization
        self.alpha = alpha
        self.confidence = confidence
        self.num_threads = num_threads
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        self._check_common(self.factors, self.iterations, self.num_threads)
        if self.confidence not in ("orders", "quantity", "recency"):
            raise ConfigError(f"confidence must be 'orders', 'quantity' or 'recency', got {self.confidence!r}")
        if not self.alpha > 0 or self.regularization < 0:
            raise ConfigError("alpha must be positive and regularization non-negative")

    def _values(self, h: Interactions) -> sp.csr_matrix:
        if self.confidence == "orders":
            v = h.orders.data.astype(np.float64)
        elif self.confidence == "quantity":
            v = np.log1p(np.maximum(h.quantity, 0.0))
        else:
            v = h.weight.astype(np.float64)
        # confidence = 1 + alpha * value (so that a bought product always weighs more than an unbought one)
        return sp.csr_matrix(
            ((1.0 + self.alpha * v).astype(np.float32), h.orders.indices, h.orders.indptr), shape=h.orders.shape
        )

    def _fit(self, x: Interactions) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        with _blas_single():
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=1.0,
                iterations=self.iterations,
                num_threads=self.num_threads,
                random_state=self.random_state,
            )
            model.fit(self._values(x), show_progress=False)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.fit_customers_ = x.customers

    def _fold_in(self, h: Interactions) -> npt.NDArray[np.float32]:
        """Exact least-squares factors for customers outside the fit (implicit's update, solved directly)."""
        assert self.item_factors_ is not None
        y = self.item_factors_.astype(np.float64)
        base = y.T @ y + self.regularization * np.eye(y.shape[1])
        conf = self._values(h)
        out = np.zeros((h.n_customers, y.shape[1]), dtype=np.float32)
        for u in range(h.n_customers):
            a, b = conf.indptr[u], conf.indptr[u + 1]
            if a == b:
                continue
            idx = conf.indices[a:b]
            c = conf.data[a:b].astype(np.float64)
            yi = y[idx]
            lhs = base + (yi.T * (c - 1.0)) @ yi
            out[u] = np.linalg.solve(lhs, yi.T @ c)
        return out


@register
class BPR(_Factorisation):
    """Bayesian personalised ranking (implicit's CPU implementation, one thread: see the module docstring)."""

    name: ClassVar[str] = "bpr"
    description: ClassVar[str] = "matrix factorisation (implicit BPR)"

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 100,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        random_state: int = 0,
        *,
        rebuy: Rebuy | None = None,
        rebuy_threshold: float | None = None,
    ) -> None:
        super().__init__(rebuy=rebuy, rebuy_threshold=rebuy_threshold)
        self.factors = factors
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        self._check_common(self.factors, self.iterations, 1)
        if not self.learning_rate > 0 or self.regularization < 0:
            raise ConfigError("learning_rate must be positive and regularization non-negative")

    def _fit(self, x: Interactions) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        with _blas_single():
            model = BayesianPersonalizedRanking(
                factors=self.factors,
                learning_rate=self.learning_rate,
                regularization=self.regularization,
                iterations=self.iterations,
                num_threads=1,
                random_state=self.random_state,
            )
            model.fit(x.matrix("binary").astype(np.float32), show_progress=False)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.fit_customers_ = x.customers

    def _fold_in(self, h: Interactions) -> npt.NDArray[np.float32]:
        assert self.item_factors_ is not None and self.user_factors_ is not None
        binary = h.matrix("binary")
        counts = np.maximum(np.diff(binary.indptr), 1).astype(np.float64)
        out = (binary @ self.item_factors_.astype(np.float64)) / counts[:, None]
        # implicit keeps the item bias in the last factor, multiplied by a constant 1 on the user side
        out[:, -1] = self.user_factors_[:, -1].mean() if len(self.user_factors_) else 1.0
        result: npt.NDArray[np.float32] = np.asarray(out, dtype=np.float32)
        return result
