"""Recommendations (first version): popularity, per-segment top products, the customer's own history, and a
blend, all in SQL on the backend; evaluated on a time split.

Items that customers often re-buy may be recommended again; any other item is excluded once bought. An item
counts as often re-bought when the share of its buyers who bought it in two or more orders reaches the
threshold (by default the median of that share over items with 5+ buyers, so the split follows the shop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from shopseg.backends.duckdb import DuckDBBackend

__all__ = ["METHODS", "RecommendResult", "evaluate", "recommend_all", "segment_top_products"]

METHODS: dict[str, str] = {
    "popularity": "global top products by number of buyers (already-bought items excluded unless re-bought often)",
    "segment_top": "the customer's segment's top products by number of buyers (same exclusion)",
    "own_history": "the customer's own most-bought products (by number of orders)",
    "blend": "own often-re-bought products first (by number of orders), then the segment's top products not yet bought",
}


def build_interactions(backend: DuckDBBackend, cutoff: datetime | None = None) -> None:
    """One pass over the clean lines: per (customer, product) the orders, units, spend and last purchase, over
    all time and, when ``cutoff`` is given, before it (for the time-split evaluation)."""
    c = f"TIMESTAMP '{cutoff:%Y-%m-%d %H:%M:%S}'" if cutoff else None
    train = (
        f", count(*) FILTER (WHERE ts < {c}) AS n_orders_train, sum(q) FILTER (WHERE ts < {c}) AS quantity_train, "
        f"sum(a) FILTER (WHERE ts < {c}) AS amount_train, max(ts) FILTER (WHERE ts < {c}) AS last_ts_train"
        if c
        else ""
    )
    backend.execute(
        "CREATE OR REPLACE TABLE interactions_all AS "
        f"SELECT customer_id, product_id, count(*) AS n_orders, sum(q) AS quantity, sum(a) AS amount, "
        f"max(ts) AS last_ts{train} FROM ("
        "  SELECT customer_id, product_id, order_id, sum(quantity) AS q, sum(quantity * unit_price) AS a, "
        "  min(ts) AS ts FROM transactions WHERE product_id IS NOT NULL GROUP BY ALL"
        ") GROUP BY ALL"
    )


def _prepare(backend: DuckDBBackend, prefix: str, threshold: float | None, *, train: bool = False) -> float:
    """Create ``{prefix}interactions`` and ``{prefix}items`` from ``interactions_all``; return the re-buy
    threshold used."""
    if train:
        backend.execute(
            f"CREATE OR REPLACE VIEW {prefix}interactions AS SELECT customer_id, product_id, "
            "n_orders_train AS n_orders, quantity_train AS quantity, amount_train AS amount, last_ts_train AS last_ts "
            "FROM interactions_all WHERE n_orders_train > 0"
        )
    else:
        backend.execute(
            f"CREATE OR REPLACE VIEW {prefix}interactions AS SELECT customer_id, product_id, n_orders, quantity, "
            "amount, last_ts FROM interactions_all"
        )
    backend.execute(
        f"CREATE OR REPLACE TABLE {prefix}items AS "
        f"SELECT product_id, count(*) AS n_buyers, avg(CASE WHEN n_orders >= 2 THEN 1.0 ELSE 0.0 END) "
        f"AS repurchase_rate FROM {prefix}interactions GROUP BY ALL"
    )
    if threshold is None:
        t = backend.scalar(f"SELECT median(repurchase_rate) FROM {prefix}items WHERE n_buyers >= 5")
        threshold = float(t) if t is not None else 1.0
    backend.execute(
        f"CREATE OR REPLACE TABLE {prefix}items AS SELECT *, repurchase_rate >= {threshold} AND n_buyers >= 5 "
        f"AS rebuyable FROM {prefix}items"
    )
    return threshold


#: each product's most frequent name (ties: the smaller name), for readable outputs
_NAMES = (
    "SELECT product_id, arg_min(product_name, (-n, product_name)) AS product_name FROM ("
    "SELECT product_id, product_name, count(*) AS n FROM transactions WHERE product_id IS NOT NULL GROUP BY ALL"
    ") GROUP BY product_id"
)


def _pool(n: int) -> int:
    """Candidates per customer before bought items are removed (n + 20: a customer must have bought 20 of a
    list's top products, none of them often re-bought, to get fewer than n)."""
    return n + 20


def _recs_sql(method: str, prefix: str, users: str, n: int, interactions: str | None = None) -> str:
    """SQL giving (customer_id, rank, product_id, score, source) for ``users`` (customer_id, segment).

    ``interactions`` (default ``{prefix}interactions``) is what the users bought; it may be cut to just
    ``users`` (the evaluation does), while ``{prefix}items`` and ``{prefix}segment_items`` describe everyone.
    """
    i, it = interactions or f"{prefix}interactions", f"{prefix}items"
    if method == "popularity":
        pool = f"SELECT product_id, n_buyers FROM {it} ORDER BY n_buyers DESC, product_id LIMIT {_pool(n)}"
        cand = (
            f"SELECT c.customer_id, p.product_id, p.n_buyers::DOUBLE / (SELECT count(DISTINCT customer_id) FROM "
            f"{prefix}interactions) AS score, 'popularity' AS source FROM {users} c, ({pool}) p"
        )
        cand = _not_bought(cand, i, it, f"SELECT product_id FROM ({pool})")
    elif method == "segment_top":
        pool = f"SELECT * FROM {prefix}segment_items WHERE seg_rank <= {_pool(n)}"
        cand = (
            f"SELECT c.customer_id, p.product_id, p.buyer_share AS score, 'segment_top' AS source "
            f"FROM {users} c JOIN ({pool}) p ON p.segment = c.segment"
        )
        cand = _not_bought(cand, i, it, f"SELECT DISTINCT product_id FROM ({pool})")
    elif method == "own_history":
        cand = (
            f"SELECT c.customer_id, b.product_id, b.n_orders + epoch(b.last_ts) / 1e12 AS score, "
            f"'own_history' AS source FROM {users} c JOIN {i} b USING (customer_id)"
        )
    elif method == "blend":
        # each part is cut to its own top n first, so the final ranking sorts at most 2n rows per customer
        own = (
            f"SELECT c.customer_id, b.product_id, 1.0 + b.n_orders / (b.n_orders + 1.0) + epoch(b.last_ts) / 1e15 "
            f"AS score, 'own_history' AS source FROM {users} c JOIN {i} b USING (customer_id) "
            f"JOIN {it} x USING (product_id) WHERE x.rebuyable"
        )
        seg = _recs_sql("segment_top", prefix, users, n, interactions)
        pick = "SELECT customer_id, product_id, score, source FROM"
        cand = f"{pick} ({_top(own, n)}) UNION ALL {pick} ({seg})"
        cand = (
            f"SELECT customer_id, product_id, max(score) AS score, arg_max(source, score) AS source "
            f"FROM ({cand}) GROUP BY ALL"
        )
    else:
        raise ValueError(method)
    return _top(cand, n)


def _not_bought(cand: str, interactions: str, items: str, pool_products: str) -> str:
    """``cand`` without the pairs a customer already bought, unless the product is often re-bought.

    Only purchases of the candidate products are looked at (a pool of a few hundred products), so the
    anti-join's hash table holds those purchases, not every purchase in the shop.
    """
    bought = (
        f"SELECT b.customer_id, b.product_id FROM {interactions} b JOIN {items} x USING (product_id) "
        f"WHERE NOT x.rebuyable AND b.product_id IN ({pool_products})"
    )
    return f"SELECT * FROM ({cand}) ANTI JOIN ({bought}) USING (customer_id, product_id)"


def _top(cand: str, n: int) -> str:
    """The first ``n`` candidates per customer by score (ties: product id), numbered from 1."""
    return (
        f"SELECT customer_id, rank, product_id, score, source FROM ("
        f"SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY score DESC, product_id) AS rank "
        f"FROM ({cand})) WHERE rank <= {n}"
    )


def _segment_items(backend: DuckDBBackend, prefix: str, segments: str) -> None:
    i = f"{prefix}interactions"
    backend.execute(
        f"CREATE OR REPLACE TABLE {prefix}segment_items AS "
        f"WITH s AS (SELECT segment, count(*) AS seg_buyers FROM {segments} "
        f"           WHERE customer_id IN (SELECT customer_id FROM {i}) GROUP BY 1), "
        f"pop AS (SELECT product_id, count(*)::DOUBLE / (SELECT count(DISTINCT customer_id) FROM {i}) AS pop_share "
        f"        FROM {i} GROUP BY 1), "
        f"si AS (SELECT g.segment, b.product_id, count(*) AS buyers FROM {i} b JOIN {segments} g USING (customer_id) "
        f"       GROUP BY ALL) "
        f"SELECT si.segment, si.product_id, si.buyers, si.buyers::DOUBLE / s.seg_buyers AS buyer_share, "
        f"(si.buyers::DOUBLE / s.seg_buyers) / pop.pop_share AS lift, "
        f"row_number() OVER (PARTITION BY si.segment ORDER BY si.buyers DESC, si.product_id) AS seg_rank "
        f"FROM si JOIN s USING (segment) JOIN pop USING (product_id)"
    )


@dataclass
class RecommendResult:
    threshold: float
    evaluation: pd.DataFrame | None = None
    eval_notes: list[str] = field(default_factory=list)


def recommend_all(
    backend: DuckDBBackend, *, n: int, threshold: float | None, method: str = "blend", cutoff: datetime | None = None
) -> float:
    """Fit on all clean transactions; write ``recommendations`` and ``segment_items``. Needs ``segments``.
    ``cutoff`` also prepares the training-period interactions that :func:`evaluate` uses."""
    build_interactions(backend, cutoff)
    threshold = _prepare(backend, "", threshold)
    _segment_items(backend, "", "segments")
    backend.execute(
        "CREATE OR REPLACE TABLE recommendations AS "
        f"WITH names AS ({_NAMES}) "
        f"SELECT r.customer_id, r.rank, r.product_id, names.product_name, r.score, r.source "
        f"FROM ({_recs_sql(method, '', 'segments', n)}) r LEFT JOIN names USING (product_id) "
        "ORDER BY r.customer_id, r.rank"
    )
    return threshold


def segment_top_products(backend: DuckDBBackend, n: int) -> pd.DataFrame:
    """Top products per segment by buyers, with buyer share and lift against the population."""
    return backend.df(
        f"WITH names AS ({_NAMES}) "
        f"SELECT s.segment, s.seg_rank AS rank, s.product_id, names.product_name, s.buyers, s.buyer_share, s.lift "
        f"FROM segment_items s LEFT JOIN names USING (product_id) WHERE s.seg_rank <= {n} "
        "ORDER BY s.segment, s.seg_rank"
    )


def evaluate(
    backend: DuckDBBackend,
    *,
    as_of: datetime,
    holdout_days: int,
    n: int,
    threshold: float | None,
    segment_of: str,
) -> tuple[pd.DataFrame, dict[str, object]]:
    """Hold out the last ``holdout_days``; fit on the rest; score every method on users with purchases on both
    sides. Truth = distinct products bought in the hold-out that exist in training. ``segment_of`` is a table
    (customer_id, segment) giving each customer's segment as of the cut-off; only its customers are scored.
    Uses ``interactions_all`` built
    by :func:`recommend_all` with the same cut-off (built here when missing).
    """
    cutoff = as_of - timedelta(days=holdout_days)
    c = f"TIMESTAMP '{cutoff:%Y-%m-%d %H:%M:%S}'"
    a = f"TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'"
    p = "ev_"
    cols = [name for name, _ in backend.columns("interactions_all")] if backend.has_table("interactions_all") else []
    if "n_orders_train" not in cols:
        build_interactions(backend, cutoff)
    used = _prepare(backend, p, threshold, train=True)
    _segment_items(backend, p, segment_of)
    backend.execute(
        f"CREATE OR REPLACE TABLE {p}truth AS SELECT DISTINCT t.customer_id, t.product_id FROM transactions t "
        f"WHERE t.ts >= {c} AND t.ts < {a} AND t.product_id IN (SELECT product_id FROM {p}items) "
        f"AND t.customer_id IN (SELECT customer_id FROM {p}interactions) "
        f"AND t.customer_id IN (SELECT customer_id FROM {segment_of})"
    )
    backend.execute(
        f"CREATE OR REPLACE TABLE {p}users AS SELECT DISTINCT t.customer_id, coalesce(s.segment, -1) AS segment "
        f"FROM {p}truth t LEFT JOIN {segment_of} s USING (customer_id)"
    )
    n_users = int(backend.scalar(f"SELECT count(*) FROM {p}users"))
    info: dict[str, object] = {
        "cutoff": cutoff.isoformat(),
        "users": n_users,
        "k": n,
        "rebuy_threshold": used,
        "train_items": int(backend.scalar(f"SELECT count(*) FROM {p}items")),
    }
    rows = []
    if n_users == 0:
        return pd.DataFrame(columns=["method", "precision", "recall", "hit_rate", "coverage"]), info
    # what the evaluated users bought before the cut-off: a small table, so the lists below never scan or
    # hash every purchase in the shop
    backend.execute(
        f"CREATE OR REPLACE TABLE {p}user_interactions AS "
        f"SELECT b.* FROM {p}interactions b SEMI JOIN {p}users u USING (customer_id)"
    )
    for method in METHODS:
        backend.execute(
            f"CREATE OR REPLACE TABLE {p}recs AS {_recs_sql(method, p, f'{p}users', n, f'{p}user_interactions')}"
        )
        r = backend.con.execute(
            f"WITH r AS (SELECT * FROM {p}recs), "
            f"h AS (SELECT r.customer_id, count(*) AS hits FROM r JOIN {p}truth t USING (customer_id, product_id) "
            f"      GROUP BY 1), "
            f"tc AS (SELECT customer_id, count(*) AS n_true FROM {p}truth GROUP BY 1) "
            f"SELECT avg(coalesce(h.hits, 0) / {n}), avg(coalesce(h.hits, 0) / tc.n_true), "
            f"avg(CASE WHEN h.hits > 0 THEN 1.0 ELSE 0.0 END), "
            f"(SELECT count(DISTINCT product_id) FROM r)::DOUBLE / {info['train_items']} "
            f"FROM tc LEFT JOIN h USING (customer_id)"
        ).fetchall()[0]
        assert r is not None
        rows.append((method, float(r[0]), float(r[1]), float(r[2]), float(r[3])))
    table = pd.DataFrame(rows, columns=["method", "precision", "recall", "hit_rate", "coverage"])
    table["description"] = table["method"].map(METHODS)
    return table, info
