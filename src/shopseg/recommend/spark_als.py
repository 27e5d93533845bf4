"""Implicit-feedback ALS fitted by Spark MLlib, behind the Recommender interface.

:class:`SparkALS` is :class:`~shopseg.recommend.als.ALS` with the factorisation done by
``pyspark.ml.recommendation.ALS`` (``implicitPrefs=True``) on the active Spark session, so the interactions of a
shop too big for one machine's solver are factorised by the cluster. Everything else is the interface's:

* **Confidence** is the same as ALS's: ``1 + alpha * value`` with value = orders, ``log1p(quantity)`` or the
  recency-weighted orders (Spark computes ``1 + alpha * rating`` from the value it is given).
* **Regularisation** follows Spark's ALS-WR: a customer's (product's) ridge is ``regularization`` times the
  number of products (customers) they interacted with, so the same ``regularization`` is stronger than in
  implicit's ALS; folding in a customer the model was not fitted on solves that same equation.
* **Scoring** (recommend, the evaluation) is the interface's engine on the driver, in batches of customers,
  from the factors: the same re-buy rules, cold starts and business filters as every recommender.
* **Persistence**: ``recommender.json`` + ``.npy`` factors like ALS; a saved model loads and recommends
  without Spark.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shopseg.errors import ConfigError
from shopseg.recommend.als import ALS
from shopseg.recommend.base import Interactions, Rebuy, register

__all__ = ["SparkALS"]


@register
class SparkALS(ALS):
    """Implicit ALS (Hu, Koren & Volinsky) on Spark MLlib; confidence from orders, quantity or recency."""

    name: ClassVar[str] = "spark_als"
    description: ClassVar[str] = (
        "matrix factorisation (Spark MLlib implicit ALS, confidence from recency-weighted orders)"
    )

    def __init__(
        self,
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 0.05,
        alpha: float = 5.0,
        confidence: Literal["orders", "quantity", "recency"] = "recency",
        num_threads: int = 1,
        random_state: int = 0,
        blocks: int | None = None,
        *,
        rebuy: Rebuy | None = None,
        rebuy_threshold: float | None = None,
    ) -> None:
        super().__init__(
            factors,
            iterations,
            regularization,
            alpha,
            confidence,
            num_threads,
            random_state,
            rebuy=rebuy,
            rebuy_threshold=rebuy_threshold,
        )
        self.blocks = blocks

    def _check_params(self) -> None:
        super()._check_params()
        if self.blocks is not None and self.blocks < 1:
            raise ConfigError(f"blocks must be at least 1 (or None: Spark's default), got {self.blocks!r}")

    def _raw_values(self, h: Interactions) -> npt.NDArray[np.float64]:
        """The value whose confidence is ``1 + alpha * value`` (ALS._values without the 1 + alpha)."""
        if self.confidence == "orders":
            values = np.asarray(h.orders.data, dtype=np.float64)
        elif self.confidence == "quantity":
            values = np.log1p(np.maximum(h.quantity, 0.0))
        else:
            values = np.asarray(h.weight, dtype=np.float64)
        return values

    def _fit(self, x: Interactions) -> None:
        from pyspark.ml.recommendation import ALS as MLALS

        from shopseg.backends.spark import spark_error
        from shopseg.segment.spark_mllib import active_session

        spark = active_session()
        coo = x.orders.tocoo()
        # Spark's ALS wants integer ids: the rows and columns of the interaction matrix
        table = pa.table(
            {
                "customer": pa.array(coo.row.astype(np.int32)),
                "product": pa.array(coo.col.astype(np.int32)),
                # tocoo() of a CSR matrix keeps the order of .data, which the values are aligned with
                "value": pa.array(self._raw_values(x).astype(np.float32)),
            }
        )
        ratings = spark.createDataFrame(table).cache()
        params: dict[str, Any] = {}
        if self.blocks is not None:
            params = {"numUserBlocks": self.blocks, "numItemBlocks": self.blocks}
        # every iteration lengthens the plan's lineage; without checkpoints 15 iterations overflow the JVM's stack
        context = spark.sparkContext
        own_checkpoints = context.getCheckpointDir() is None
        if own_checkpoints:
            checkpoints = tempfile.mkdtemp(prefix="shopseg-als-")
            context.setCheckpointDir(checkpoints)
        try:
            model = MLALS(
                rank=self.factors,
                maxIter=self.iterations,
                regParam=self.regularization,
                alpha=self.alpha,
                implicitPrefs=True,
                nonnegative=False,
                userCol="customer",
                itemCol="product",
                ratingCol="value",
                seed=self.random_state,
                checkpointInterval=5,
                **params,
            ).fit(ratings)
            users = model.userFactors.toArrow()
            items = model.itemFactors.toArrow()
        except Exception as exc:
            raise spark_error(exc, "Spark ALS") from None
        finally:
            ratings.unpersist()
            if own_checkpoints:
                shutil.rmtree(checkpoints, ignore_errors=True)
        self.user_factors_ = _factor_matrix(users, x.n_customers, self.factors)
        self.item_factors_ = _factor_matrix(items, x.n_products, self.factors)
        self.fit_customers_ = x.customers

    def _fold_in(self, h: Interactions) -> npt.NDArray[np.float32]:
        """Spark's normal equation for customers outside the fit: (YᵀY + Yᵀ(C − I)Y + λ·n_u·I) x = Yᵀ C p."""
        assert self.item_factors_ is not None
        y = self.item_factors_.astype(np.float64)
        gram = y.T @ y
        conf = self._values(h)
        out = np.zeros((h.n_customers, y.shape[1]), dtype=np.float32)
        for u in range(h.n_customers):
            a, b = conf.indptr[u], conf.indptr[u + 1]
            if a == b:
                continue
            idx = conf.indices[a:b]
            c = conf.data[a:b].astype(np.float64)
            yi = y[idx]
            lhs = gram + (yi.T * (c - 1.0)) @ yi + self.regularization * (b - a) * np.eye(y.shape[1])
            out[u] = np.linalg.solve(lhs, yi.T @ c)
        return out


def _factor_matrix(table: pa.Table, rows: int, rank: int) -> npt.NDArray[np.float32]:
    """Spark's ``(id, features)`` factor table as a dense matrix; ids Spark never saw keep zero factors."""
    out = np.zeros((rows, rank), dtype=np.float32)
    ids = np.asarray(table.column("id").to_numpy(), dtype=np.int64)
    if len(ids):
        values = np.asarray(table.column("features").combine_chunks().flatten().to_numpy(), dtype=np.float32)
        out[ids] = values.reshape(len(ids), rank)
    return out
