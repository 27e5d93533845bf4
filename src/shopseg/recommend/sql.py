"""The SQL side of recommendations: per-(customer, product) interactions from the clean lines, product names,
per-segment top products, and loading interactions into :class:`Interactions` with integer codes computed on
the backend (so no per-row Python work on large shops)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from shopseg.backends.duckdb import DuckDBBackend
from shopseg.errors import BackendError, DataError
from shopseg.recommend.base import IntArray, Interactions, StrArray

__all__ = [
    "NAMES_SQL",
    "arrow",
    "build_interactions",
    "load_interactions",
    "segment_items",
    "segment_top_products",
]

#: each product's most frequent name (ties: the smaller name), for readable outputs
NAMES_SQL = (
    "SELECT product_id, arg_min(product_name, (-n, product_name)) AS product_name FROM ("
    "SELECT product_id, product_name, count(*) AS n FROM transactions WHERE product_id IS NOT NULL GROUP BY ALL"
    ") GROUP BY product_id"
)


def _ts(t: datetime) -> str:
    return f"TIMESTAMP '{t:%Y-%m-%d %H:%M:%S}'"


def arrow(backend: DuckDBBackend, sql: str) -> pa.Table:
    """A query's result as Arrow (through a relation, which DuckDB does not copy twice)."""
    import duckdb

    try:
        table: pa.Table = backend.con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise BackendError(f"DuckDB failed: {exc}\nSQL: {sql[:2000]}") from None
    return table


def build_interactions(
    backend: DuckDBBackend, as_of: datetime, cutoff: datetime | None = None, *, half_life_days: float = 60.0
) -> None:
    """One pass over the clean lines: ``interactions_all`` with, per (customer, product), the orders, units,
    last purchase and recency-weighted orders (each order counts ``0.5 ** (days before as_of /
    half-life)``) over all time and, when ``cutoff`` is given, before it (weights relative to the cut-off)."""
    a = _ts(as_of)
    hl = float(half_life_days)
    train = ""
    if cutoff is not None:
        c = _ts(cutoff)
        train = (
            f", count(*) FILTER (WHERE ts < {c}) AS n_orders_train, sum(q) FILTER (WHERE ts < {c}) AS quantity_train, "
            f"max(ts) FILTER (WHERE ts < {c}) AS last_ts_train, "
            f"sum(pow(0.5, (epoch({c}) - epoch(ts)) / 86400.0 / {hl})) FILTER (WHERE ts < {c}) AS weight_train"
        )
    backend.execute(
        "CREATE OR REPLACE TABLE interactions_all AS "
        f"SELECT customer_id, product_id, count(*) AS n_orders, sum(q) AS quantity, "
        f"max(ts) AS last_ts, sum(pow(0.5, greatest(epoch({a}) - epoch(ts), 0) / 86400.0 / {hl})) AS weight{train} "
        "FROM ("
        "  SELECT customer_id, product_id, order_id, sum(quantity) AS q, "
        f"  min(ts) AS ts FROM transactions WHERE product_id IS NOT NULL AND ts < {a} GROUP BY ALL"
        ") GROUP BY ALL"
    )


def register_codes(
    backend: DuckDBBackend, name: str, ids: StrArray, extra: dict[str, np.ndarray] | None = None
) -> None:
    """A table ``name`` (id, code[, extra columns]) giving each sorted id its position."""
    cols = {
        "id": pa.array(np.asarray(ids, dtype=object), type=pa.string()),
        "code": pa.array(np.arange(len(ids), dtype=np.int32)),
    }
    for k, v in (extra or {}).items():
        cols[k] = pa.array(v)
    backend.create_table(name, pa.table(cols))


def load_interactions(
    backend: DuckDBBackend,
    *,
    customers: StrArray,
    products: StrArray,
    customers_table: str,
    products_table: str,
    as_of: datetime,
    half_life_days: float,
    train: bool = False,
    segments: IntArray | None = None,
    where: str = "",
) -> Interactions:
    """Interactions of the customers in ``customers_table`` (id, code: positions in ``customers``) over
    ``products`` (``products_table``: id, code), from ``interactions_all`` (its training columns when
    ``train``); ``where`` adds a condition (aliases: ``i`` interactions, ``c`` customers, ``p`` products)."""
    sfx = "_train" if train else ""
    cond = f"AND {where}" if where else ""
    t = arrow(
        backend,
        f"SELECT c.code AS u, p.code AS i, i.n_orders{sfx}::DOUBLE AS n, i.quantity{sfx}::DOUBLE AS q, "
        f"greatest(epoch({_ts(as_of)}) - epoch(i.last_ts{sfx}), 0) / 86400.0 AS r, i.weight{sfx}::DOUBLE AS w "
        f"FROM interactions_all i JOIN {customers_table} c ON c.id = i.customer_id "
        f"JOIN {products_table} p ON p.id = i.product_id WHERE i.n_orders{sfx} > 0 {cond}",
    )
    u = t.column("u").to_numpy().astype(np.int64)
    i = t.column("i").to_numpy().astype(np.int64)
    return from_codes(
        customers,
        products,
        u,
        i,
        t.column("n").to_numpy(),
        t.column("q").to_numpy(),
        t.column("r").to_numpy(),
        t.column("w").to_numpy(),
        as_of=as_of,
        half_life_days=half_life_days,
        segments=segments,
    )


def from_codes(
    customers: StrArray,
    products: StrArray,
    u: IntArray,
    i: IntArray,
    n: np.ndarray,
    q: np.ndarray,
    r: np.ndarray,
    w: np.ndarray,
    *,
    as_of: datetime,
    half_life_days: float,
    segments: IntArray | None = None,
) -> Interactions:
    """Interactions from (row, column) codes of unique pairs and their values."""
    # scipy's COO → CSR conversion (a counting pass plus a per-row sort) is much cheaper than a global sort; the
    # data carried through it are the positions, which then reorder the other arrays
    perm = sp.csr_matrix((np.arange(len(u), dtype=np.float64), (u, i)), shape=(len(customers), len(products)))
    perm.sum_duplicates()
    order = perm.data.astype(np.int64)
    if len(order) != len(u):
        raise DataError(f"{len(u) - len(order)} duplicate (customer, product) pairs; interactions must be unique")
    orders = sp.csr_matrix(
        (np.asarray(n, dtype=np.float64)[order], perm.indices, perm.indptr), shape=(len(customers), len(products))
    )
    return Interactions(
        customers=customers,
        products=products,
        orders=orders,
        quantity=np.nan_to_num(np.asarray(q, dtype=np.float64)[order]),
        recency_days=np.asarray(r, dtype=np.float64)[order],
        weight=np.asarray(w, dtype=np.float64)[order],
        as_of=as_of,
        half_life_days=half_life_days,
        segments=segments,
    )


def segment_items(backend: DuckDBBackend, segments: str = "segments", prefix: str = "") -> None:
    """``{prefix}segment_items``: per segment and product the buyers, buyer share, lift against the population
    and rank by buyers, from ``interactions_all`` (all time) and the table ``segments`` (customer_id, segment);
    with ``buyers_train`` (buyers before the evaluation's cut-off) when ``interactions_all`` has its training
    columns.

    One pass over the (customer, product) pairs: grouping sets count both the pairs per (segment, product) and
    the customers per segment with at least one pair (the segment's buyers)."""
    i = "interactions_all"
    has_train = "n_orders_train" in {c for c, _ in backend.columns(i)}
    train = ", count(*) FILTER (WHERE b.n_orders_train > 0) AS n_train" if has_train else ""
    train_col = ", si.n_train AS buyers_train" if has_train else ""
    backend.execute(
        f"CREATE OR REPLACE TABLE {prefix}segment_items AS "
        f"WITH agg AS (SELECT g.segment, b.product_id, count(*) AS n{train}, GROUPING(b.customer_id) AS by_product "
        f"             FROM {i} b JOIN {segments} g USING (customer_id) "
        f"             GROUP BY GROUPING SETS ((g.segment, b.product_id), (g.segment, b.customer_id))), "
        "s AS (SELECT segment, count(*) AS seg_buyers FROM agg WHERE by_product = 0 GROUP BY 1), "
        "si AS (SELECT * EXCLUDE (by_product), n AS buyers FROM agg WHERE by_product = 1), "
        # every buyer has a segment (segments holds every customer with a purchase), so the population's
        # counts are the sums over segments
        "pop AS (SELECT product_id, sum(buyers)::DOUBLE / (SELECT sum(seg_buyers) FROM s) AS pop_share "
        "        FROM si GROUP BY 1) "
        "SELECT si.segment, si.product_id, si.buyers, si.buyers::DOUBLE / s.seg_buyers AS buyer_share, "
        "(si.buyers::DOUBLE / s.seg_buyers) / pop.pop_share AS lift, "
        "row_number() OVER (PARTITION BY si.segment ORDER BY si.buyers DESC, si.product_id) AS seg_rank, "
        "row_number() OVER (PARTITION BY si.segment ORDER BY CASE WHEN si.buyers >= 5 THEN 0 ELSE 1 END, "
        "  (si.buyers::DOUBLE / s.seg_buyers) / pop.pop_share DESC, si.buyers DESC, si.product_id) AS lift_rank"
        f"{train_col} "
        "FROM si JOIN s USING (segment) JOIN pop USING (product_id)"
    )


def segment_top_products(
    backend: DuckDBBackend, n: int, rank_by: str = "buyers", *, names: str = NAMES_SQL, where: str = ""
) -> pd.DataFrame:
    """Top products per segment (the banners): by buyers, or by lift among products with 5+ buyers in the
    segment; with buyer share and lift against the population. ``names`` gives (product_id, product_name);
    ``where`` (SQL on ``segment_items``, e.g. the business filters) keeps only some products, ranked again
    1, 2, … among them."""
    col = "seg_rank" if rank_by == "buyers" else "lift_rank"
    cond = f"WHERE {where}" if where else ""
    return backend.df(
        f"WITH names AS ({names}), r AS (SELECT *, row_number() OVER (PARTITION BY segment ORDER BY {col}) AS rnk "
        f"FROM segment_items {cond}) "
        "SELECT r.segment, r.rnk AS rank, r.product_id, names.product_name, r.buyers, r.buyer_share, r.lift "
        f"FROM r LEFT JOIN names USING (product_id) WHERE r.rnk <= {int(n)} ORDER BY r.segment, r.rnk"
    )
