"""Association rules between products ("bought x also bought Y"): support, confidence and lift, for
cross-sell lists per customer, similar products, and bundles (pairs bought in the same order).

For customers (:class:`Cooccurrence`): two products co-occur when one customer bought both (at any time);
``support(x) = buyers(x) / customers``, ``support(x, Y) = buyers of both / customers``,
``confidence(x → Y) = support(x, Y) / support(x)``, ``lift(x → Y) = confidence(x → Y) / support(Y)``. Rules need
``min_customers`` customers who bought both; each product keeps its ``neighbours`` most frequent partners
(counted exactly by ``implicit``'s ``all_pairs_knn`` on the binary customer × product matrix).

For orders (:func:`bundles`): the same measures over orders, computed in SQL on the backend from a seeded
sample of at most ``sample_orders`` orders with at most ``max_order_items`` lines each.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shopseg.backends.duckdb import DuckDBBackend
from shopseg.errors import ConfigError
from shopseg.recommend.base import Interactions, Rebuy, Recommender, Scores, register
from shopseg.recommend.knn import item_similarity

__all__ = ["Cooccurrence", "bundles"]


@register
class Cooccurrence(Recommender):
    """Per customer: the sum over the customer's products x of ``confidence(x → Y)`` (or lift) for each Y."""

    name: ClassVar[str] = "cooccurrence"
    description: ClassVar[str] = "association rules: products bought by customers who bought the same products"
    cold_start: ClassVar[str] = "empty"
    _sparse: ClassVar[tuple[str, ...]] = ("counts_",)

    counts_: sp.csr_matrix | None = None

    def __init__(
        self,
        metric: Literal["confidence", "lift"] = "confidence",
        min_customers: int = 3,
        neighbours: int = 100,
        num_threads: int = 1,
        *,
        rebuy: Rebuy | None = None,
        rebuy_threshold: float | None = None,
    ) -> None:
        super().__init__(rebuy=rebuy, rebuy_threshold=rebuy_threshold)
        self.metric = metric
        self.min_customers = min_customers
        self.neighbours = neighbours
        self.num_threads = num_threads

    def _check_params(self) -> None:
        super()._check_params()
        if self.metric not in ("confidence", "lift"):
            raise ConfigError(f"metric must be 'confidence' or 'lift', got {self.metric!r}")
        if self.min_customers < 1:
            raise ConfigError(f"min_customers must be at least 1, got {self.min_customers!r}")
        if self.neighbours < 1 or self.num_threads < 1:
            raise ConfigError("neighbours and num_threads must be at least 1")

    def _fit(self, x: Interactions) -> None:
        counts = item_similarity(x, similarity="cooccurrence", neighbours=self.neighbours, num_threads=self.num_threads)
        counts.data = np.rint(counts.data)
        counts.data[counts.data < self.min_customers] = 0
        counts.eliminate_zeros()
        self.counts_ = counts

    def rule_matrix(self, metric: Literal["confidence", "lift", "support"] | None = None) -> sp.csr_matrix:
        """Products × products: the rule measure of x (row) → Y (column)."""
        assert self.counts_ is not None
        c = sp.csr_matrix(self.counts_, copy=True)
        rows = np.repeat(np.arange(c.shape[0]), np.diff(c.indptr))
        metric = metric or self.metric
        n = max(self.n_customers_, 1)
        if metric == "support":
            c.data = c.data / n
        elif metric == "confidence":
            c.data = c.data / self.buyers_[rows]
        else:
            c.data = c.data * n / (self.buyers_[rows] * self.buyers_[c.indices])
        return c

    def rules(self, min_lift: float = 0.0) -> pd.DataFrame:
        """Every kept rule: antecedent, consequent, customers, support, confidence, lift (by lift, then
        customers)."""
        assert self.products_ is not None
        cnt = self.rule_matrix("support").tocoo()
        conf = self.rule_matrix("confidence").tocoo()
        lift = self.rule_matrix("lift").tocoo()
        frame = pd.DataFrame(
            {
                "antecedent": self.products_[cnt.row],
                "consequent": self.products_[cnt.col],
                "customers": np.rint(cnt.data * max(self.n_customers_, 1)).astype(np.int64),
                "support": cnt.data,
                "confidence": conf.data,
                "lift": lift.data,
            }
        )
        frame = frame[frame["lift"] >= min_lift]
        return frame.sort_values(
            ["lift", "customers", "antecedent", "consequent"], ascending=[False, False, True, True]
        ).reset_index(drop=True)

    def _scores(self, h: Interactions) -> Scores:
        m = sp.csr_matrix(h.matrix("binary") @ self.rule_matrix())
        m.eliminate_zeros()
        return Scores(personal=m, parts={"also_bought": m}, source="also_bought")

    def _similarity(self) -> sp.csr_matrix | None:
        return self.rule_matrix()


def bundles(
    backend: DuckDBBackend,
    *,
    table: str = "transactions",
    min_orders: int = 10,
    max_order_items: int = 50,
    sample_orders: int = 20_000,
    seed: int = 0,
    top: int | None = 1000,
) -> pd.DataFrame:
    """Pairs of products bought in the same order: product_a, product_b (a < b), orders, support, confidence in
    both directions and lift, for pairs in at least ``min_orders`` orders; best lift first.

    Orders with more than ``max_order_items`` lines (wholesale restocks, not baskets) are skipped;
    when there are more than ``sample_orders`` orders a seeded sample of that many is used, so the cost stays
    bounded on large shops.
    """
    if min_orders < 1 or max_order_items < 2 or sample_orders < 1:
        raise ConfigError("bundles need min_orders >= 1, max_order_items >= 2 and sample_orders >= 1")
    limit = f"LIMIT {int(top)}" if top else ""
    sql = f"""
    WITH sizes AS (
        SELECT order_id, count(*) AS k FROM {table}
        WHERE order_id IS NOT NULL AND product_id IS NOT NULL GROUP BY order_id
    ),
    pick AS (
        SELECT order_id FROM sizes WHERE k <= {int(max_order_items)}
        ORDER BY hash(order_id || '{int(seed)}'), order_id LIMIT {int(sample_orders)}
    ),
    o AS (
        SELECT DISTINCT t.order_id, t.product_id FROM {table} t SEMI JOIN pick USING (order_id)
        WHERE t.product_id IS NOT NULL
    ),
    n AS (SELECT count(DISTINCT order_id) AS n FROM o),
    single AS (SELECT product_id, count(*) AS c FROM o GROUP BY 1 HAVING count(*) >= {int(min_orders)}),
    oo AS (SELECT o.* FROM o SEMI JOIN single USING (product_id)),
    pairs AS (
        SELECT a.product_id AS product_a, b.product_id AS product_b, count(*) AS orders
        FROM oo a JOIN oo b ON a.order_id = b.order_id AND a.product_id < b.product_id
        GROUP BY ALL HAVING count(*) >= {int(min_orders)}
    )
    SELECT p.product_a, p.product_b, p.orders, p.orders::DOUBLE / n.n AS support,
           p.orders::DOUBLE / sa.c AS confidence_a_b, p.orders::DOUBLE / sb.c AS confidence_b_a,
           p.orders::DOUBLE * n.n / (sa.c * sb.c) AS lift
    FROM pairs p, n
    JOIN single sa ON sa.product_id = p.product_a
    JOIN single sb ON sb.product_id = p.product_b
    ORDER BY lift DESC, orders DESC, product_a, product_b {limit}
    """
    return backend.df(sql)
