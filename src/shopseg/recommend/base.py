"""The recommender interface, the interaction data it learns from, persistence and the top-n engine.

Every recommender follows one contract (tested by ``tests/contract/test_recommenders.py``):

* ``fit(interactions)`` learns from an :class:`Interactions` table and returns ``self``;
* ``recommend(customer_ids, n)`` returns ``(product_ids, scores)``, two ``(len(customer_ids), n)`` arrays,
  best first, padded with ``""`` and ``nan`` when fewer than ``n`` products qualify;
* ``similar_items(product_ids, n)`` returns the same shapes for products (where the model has a notion of
  similarity; otherwise :class:`~shopseg.errors.NotFittedError` is not raised but ``NotImplementedError`` is);
* ``save(directory)`` / ``Recommender.load(directory)``: ``recommender.json`` + ``.npy`` arrays, never pickle.

Scores are computed in batches of customers. A model describes a batch's scores in up to three parts: a sparse
*personal* matrix (the customer's own products, neighbours of them), a dense matrix (matrix factorisation) and
*prior* rows shared by a group of customers (popularity, the segment's top products). The engine picks the top
``n`` from the personal entries plus each group's best prior products, so a catalogue of 50,000 products never
becomes a dense 50,000-column matrix unless the model itself is dense; the result equals a full sort (rows
where that is not certain are recomputed densely).

**Re-buying.** ``rebuy`` decides what happens to products a customer already bought: ``"always"`` they may be
recommended again, ``"never"`` they are excluded, ``"often"`` only products that customers often re-buy may come
back. A product is *often re-bought* when at least ``rebuy_threshold`` of its buyers (and at least one) bought it
in two or more orders and it has 5+ buyers; the default threshold is the median of that share over products with
5+ buyers.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from shopseg.errors import ConfigError, DataError, NotFittedError

__all__ = [
    "REGISTRY",
    "Interactions",
    "Rebuy",
    "Recommender",
    "Scores",
    "register",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]

Rebuy = Literal["always", "often", "never"]
REBUY_VALUES: tuple[str, ...] = ("always", "often", "never")

#: minimum buyers before a product can count as often re-bought
MIN_REBUY_BUYERS = 5
#: customers scored per batch (memory stays bounded; dense models use fewer, see ``_dense_batch``)
BATCH = 20_000
#: extra prior candidates per row beyond n (see ``_top_n``)
EXTRA_CANDIDATES = 100


def _as_str_array(values: Any) -> StrArray:
    arr = np.asarray(pd.Series(values, dtype="object").astype(str).to_numpy(), dtype=np.str_)
    return arr


@dataclass
class Interactions:
    """Customer × product interactions aggregated over orders (the unit every recommender learns from).

    ``orders`` is a CSR matrix (customers × products) holding the number of distinct orders in which the
    customer bought the product; ``quantity``, ``recency_days`` (days from the last such order to ``as_of``)
    and ``weight`` (recency-weighted orders: each order counts ``0.5 ** (age_days / half_life_days)``) are
    aligned with ``orders.data``. ``customers`` and ``products`` are the sorted ids of the rows and columns.
    ``segments`` (one integer per customer, -1 = unknown) is optional.
    """

    customers: StrArray
    products: StrArray
    orders: sp.csr_matrix
    quantity: FloatArray
    recency_days: FloatArray
    weight: FloatArray
    as_of: datetime
    half_life_days: float = 60.0
    segments: IntArray | None = None

    def __post_init__(self) -> None:
        n_c, n_p = len(self.customers), len(self.products)
        if self.orders.shape != (n_c, n_p):
            raise DataError(f"interactions matrix is {self.orders.shape}, expected ({n_c}, {n_p}) customers × products")
        for name in ("quantity", "recency_days", "weight"):
            if len(getattr(self, name)) != self.orders.nnz:
                raise DataError(
                    f"interactions.{name} has {len(getattr(self, name))} values for {self.orders.nnz} pairs"
                )
        if self.segments is not None and len(self.segments) != n_c:
            raise DataError(f"interactions.segments has {len(self.segments)} values for {n_c} customers")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_pairs(
        cls,
        frame: pd.DataFrame,
        as_of: datetime,
        *,
        half_life_days: float = 60.0,
        products: Sequence[str] | StrArray | None = None,
        customers: Sequence[str] | StrArray | None = None,
        segments: Mapping[str, int] | pd.Series | None = None,
    ) -> Interactions:
        """From one row per (customer, product): ``customer_id, product_id, n_orders`` and optionally
        ``quantity``, ``last_ts`` and ``weight`` (recency-weighted orders; when absent it is estimated as
        ``n_orders * 0.5 ** (age of last purchase / half-life)``).

        ``products``/``customers`` fix the columns/rows (e.g. the whole catalogue); pairs outside them are
        dropped.
        """
        need = {"customer_id", "product_id", "n_orders"}
        missing = need - set(frame.columns)
        if missing:
            raise DataError(f"interaction pairs need columns {sorted(need)}; missing {sorted(missing)}")
        f = frame
        cust = _as_str_array(f["customer_id"])
        prod = _as_str_array(f["product_id"])
        c_ids = np.unique(cust) if customers is None else np.unique(_as_str_array(customers))
        p_ids = np.unique(prod) if products is None else np.unique(_as_str_array(products))
        r = np.searchsorted(c_ids, cust)
        c = np.searchsorted(p_ids, prod)
        ok = (r < len(c_ids)) & (c < len(p_ids))
        ok[ok] &= (c_ids[r[ok]] == cust[ok]) & (p_ids[c[ok]] == prod[ok])
        n = f["n_orders"].to_numpy(dtype=np.float64)
        ok &= n > 0
        r, c, n = r[ok], c[ok], n[ok]
        q = f["quantity"].to_numpy(dtype=np.float64)[ok] if "quantity" in f else n.copy()
        if "last_ts" in f:
            last = pd.to_datetime(f["last_ts"]).to_numpy()[ok]
            age = (np.datetime64(as_of, "us") - last.astype("datetime64[us]")) / np.timedelta64(1, "D")
            age = np.maximum(np.asarray(age, dtype=np.float64), 0.0)
        else:
            age = np.zeros(len(n))
        w = (
            f["weight"].to_numpy(dtype=np.float64)[ok]
            if "weight" in f
            else n * np.power(0.5, age / max(half_life_days, 1e-9))
        )
        # one entry per (row, col): aggregate duplicates, then order like the CSR
        key = r.astype(np.int64) * len(p_ids) + c
        order = np.argsort(key, kind="stable")
        key, r, c, n, q, age, w = (a[order] for a in (key, r, c, n, q, age, w))
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        starts = np.flatnonzero(first)
        if len(starts) != len(key):
            n = np.add.reduceat(n, starts) if len(key) else n
            q = np.add.reduceat(q, starts) if len(key) else q
            w = np.add.reduceat(w, starts) if len(key) else w
            age = np.minimum.reduceat(age, starts) if len(key) else age
            r, c = r[starts], c[starts]
        indptr = np.zeros(len(c_ids) + 1, dtype=np.int64)
        np.add.at(indptr, r + 1, 1)
        indptr = np.cumsum(indptr)
        orders = sp.csr_matrix((n.astype(np.float64), c.astype(np.int32), indptr), shape=(len(c_ids), len(p_ids)))
        seg = None
        if segments is not None:
            s = pd.Series(segments) if not isinstance(segments, pd.Series) else segments
            s.index = s.index.astype(str)
            seg = s.reindex(c_ids).fillna(-1).to_numpy(dtype=np.int64)
        return cls(
            customers=c_ids,
            products=p_ids,
            orders=orders,
            quantity=q.astype(np.float64),
            recency_days=age.astype(np.float64),
            weight=w.astype(np.float64),
            as_of=as_of,
            half_life_days=half_life_days,
            segments=seg,
        )

    @classmethod
    def from_lines(
        cls,
        lines: pd.DataFrame,
        as_of: datetime | None = None,
        *,
        half_life_days: float = 60.0,
        products: Sequence[str] | StrArray | None = None,
        segments: Mapping[str, int] | pd.Series | None = None,
    ) -> Interactions:
        """From order lines (``customer_id, product_id, ts`` and optionally ``order_id, quantity``); lines at
        or after ``as_of`` are ignored (default: midnight after the last line)."""
        need = {"customer_id", "product_id", "ts"}
        missing = need - set(lines.columns)
        if missing:
            raise DataError(f"order lines need columns {sorted(need)}; missing {sorted(missing)}")
        f = lines[lines["customer_id"].notna() & lines["product_id"].notna()].copy()
        f["ts"] = pd.to_datetime(f["ts"])
        if as_of is None:
            if f.empty:
                raise DataError("no order lines to learn from")
            last = f["ts"].max()
            as_of = (last.normalize() + pd.Timedelta(days=1)).to_pydatetime()
        f = f[f["ts"] < pd.Timestamp(as_of)]
        if "order_id" not in f:
            f["order_id"] = f["customer_id"].astype(str) + "@" + f["ts"].astype(str)
        if "quantity" not in f:
            f["quantity"] = 1.0
        f["customer_id"] = f["customer_id"].astype(str)
        f["product_id"] = f["product_id"].astype(str)
        per_order = f.groupby(["customer_id", "product_id", "order_id"], sort=False, observed=True).agg(
            ts=("ts", "min"), quantity=("quantity", "sum")
        )
        per_order = per_order.reset_index()
        age = (pd.Timestamp(as_of) - per_order["ts"]).dt.total_seconds().to_numpy() / 86400.0
        per_order["w"] = np.power(0.5, np.maximum(age, 0.0) / max(half_life_days, 1e-9))
        pairs = (
            per_order.groupby(["customer_id", "product_id"], sort=False)
            .agg(
                n_orders=("order_id", "size"), quantity=("quantity", "sum"), last_ts=("ts", "max"), weight=("w", "sum")
            )
            .reset_index()
        )
        return cls.from_pairs(pairs, as_of, half_life_days=half_life_days, products=products, segments=segments)

    # ------------------------------------------------------------------ helpers
    @property
    def n_customers(self) -> int:
        return len(self.customers)

    @property
    def n_products(self) -> int:
        return len(self.products)

    def customer_codes(self, ids: Sequence[str] | StrArray) -> IntArray:
        """Row of each customer id (-1 for customers without interactions)."""
        return _codes(self.customers, _as_str_array(ids))

    def product_codes(self, ids: Sequence[str] | StrArray) -> IntArray:
        """Column of each product id (-1 for unknown products)."""
        return _codes(self.products, _as_str_array(ids))

    def matrix(self, values: Literal["orders", "quantity", "recency_days", "weight", "binary"]) -> sp.csr_matrix:
        """The interaction pattern with the chosen values (the index arrays are shared with ``orders``: never
        change the result's structure in place)."""
        if values == "orders":
            return self.orders
        data = np.ones(self.orders.nnz) if values == "binary" else getattr(self, values)
        return sp.csr_matrix(
            (np.asarray(data, dtype=np.float64), self.orders.indices, self.orders.indptr), shape=self.orders.shape
        )

    def rows(self, codes: IntArray) -> Interactions:
        """The interactions of the given rows (codes from :meth:`customer_codes`; -1 gives an empty row)."""
        codes = np.asarray(codes, dtype=np.int64)
        sel, idx = take_rows(self.orders, codes)
        safe = np.maximum(codes, 0)
        seg = None if self.segments is None else np.where(codes >= 0, self.segments[safe], -1)
        return Interactions(
            customers=np.where(codes >= 0, self.customers[safe] if len(self.customers) else "", ""),
            products=self.products,
            orders=sel,
            quantity=self.quantity[idx],
            recency_days=self.recency_days[idx],
            weight=self.weight[idx],
            as_of=self.as_of,
            half_life_days=self.half_life_days,
            segments=seg,
        )

    def with_products(self, products: StrArray) -> Interactions:
        """The same interactions over another product list (columns re-mapped; unknown products dropped)."""
        if len(products) == len(self.products) and np.array_equal(products, self.products):
            return self
        new_col = _codes(np.asarray(products), self.products)
        m = self.orders.tocoo()
        keep = new_col[m.col] >= 0
        order = np.lexsort((new_col[m.col][keep], m.row[keep]))
        rows = m.row[keep][order]
        cols = new_col[m.col][keep][order]
        sel = np.flatnonzero(keep)[order]
        indptr = np.zeros(self.n_customers + 1, dtype=np.int64)
        np.add.at(indptr, rows + 1, 1)
        orders = sp.csr_matrix(
            (m.data[sel], cols.astype(np.int32), np.cumsum(indptr)), shape=(self.n_customers, len(products))
        )
        # tocoo() of a canonical CSR keeps the data order, so entry k of coo is entry k of the CSR
        return Interactions(
            customers=self.customers,
            products=np.asarray(products),
            orders=orders,
            quantity=self.quantity[sel],
            recency_days=self.recency_days[sel],
            weight=self.weight[sel],
            as_of=self.as_of,
            half_life_days=self.half_life_days,
            segments=self.segments,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per pair: customer_id, product_id, n_orders, quantity, recency_days, weight."""
        m = self.orders.tocoo()
        return pd.DataFrame(
            {
                "customer_id": self.customers[m.row],
                "product_id": self.products[m.col],
                "n_orders": m.data,
                "quantity": self.quantity,
                "recency_days": self.recency_days,
                "weight": self.weight,
            }
        )


def _codes(sorted_ids: StrArray, ids: StrArray) -> IntArray:
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.minimum(pos, len(sorted_ids) - 1)
    found = sorted_ids[pos] == ids
    return np.where(found, pos, -1).astype(np.int64)


def take_rows(m: sp.csr_matrix, codes: IntArray) -> tuple[sp.csr_matrix, IntArray]:
    """Rows ``codes`` of a CSR matrix (-1 = an empty row) and the positions of their entries in ``m.data``."""
    codes = np.asarray(codes, dtype=np.int64)
    keep = codes >= 0
    safe = np.where(keep, codes, 0)
    if m.shape[0] == 0:
        safe = np.zeros(len(codes), dtype=np.int64)
        lens = np.zeros(len(codes), dtype=np.int64)
        starts = lens
    else:
        starts = m.indptr[safe].astype(np.int64)
        lens = np.where(keep, m.indptr[safe + 1] - starts, 0).astype(np.int64)
    total = int(lens.sum())
    indptr = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(lens, out=indptr[1:])
    idx = (np.repeat(starts - indptr[:-1], lens) + np.arange(total)).astype(np.int64)
    out = sp.csr_matrix((m.data[idx], m.indices[idx], indptr), shape=(len(codes), m.shape[1]))
    return out, idx


# ---------------------------------------------------------------------- scores and the top-n engine
@dataclass
class Scores:
    """A batch's scores in parts (see the module docstring). Every part is optional; values are >= 0.

    ``parts`` names sparse components (same shape as ``personal``) used only to say which one put a product on
    the list (the ``source`` column); ``prior_source`` names the prior rows per group.
    """

    #: at most one entry per (row, column)
    personal: sp.csr_matrix | None = None
    dense: npt.NDArray[np.floating[Any]] | None = None
    prior: FloatArray | None = None
    group: IntArray | None = None
    parts: dict[str, sp.csr_matrix] = field(default_factory=dict)
    prior_source: list[str] | None = None
    source: str = ""


def _row_of_entries(m: sp.csr_matrix) -> IntArray:
    return np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))


def _select_top(
    rows: IntArray, cols: IntArray, vals: FloatArray, n_rows: int, n: int
) -> tuple[IntArray, FloatArray, IntArray]:
    """Top ``n`` per row among (row, col, val) entries, ties to the smaller column; returns (cols, vals, count)
    as (n_rows, n) arrays padded with -1/nan, and the number of valid entries per row."""
    out_c = np.full((n_rows, n), -1, dtype=np.int64)
    out_v = np.full((n_rows, n), np.nan)
    count = np.zeros(n_rows, dtype=np.int64)
    if len(rows) == 0:
        return out_c, out_v, count
    order = np.lexsort((cols, -vals, rows))
    r, c, v = rows[order], cols[order], vals[order]
    first = np.ones(len(r), dtype=bool)
    first[1:] = r[1:] != r[:-1]
    start_of = np.maximum.accumulate(np.where(first, np.arange(len(r)), 0))
    rank = np.arange(len(r)) - start_of
    keep = rank < n
    out_c[r[keep], rank[keep]] = c[keep]
    out_v[r[keep], rank[keep]] = v[keep]
    np.add.at(count, r[keep], 1)
    return out_c, out_v, count


def _prune(m: sp.csr_matrix, n: int, rows: IntArray | None = None) -> BoolArray:
    """Entries of a CSR matrix (one entry per row and column) that can be among their row's ``n`` largest.

    The entries of a row with L >= 2n entries are dealt into n groups (by position modulo n, so that high values
    stored next to each other spread over the groups); the smallest of the n group maxima is a lower bound of
    the row's n-th largest value (n distinct entries reach it), so entries below it are dropped. Linear time;
    typically a few times n entries per row survive."""
    lens = np.diff(m.indptr)
    big = lens >= 2 * n
    if not big.any():
        return np.ones(m.nnz, dtype=bool)
    if rows is None:
        rows = _row_of_entries(m)
    key = rows * n + np.arange(m.nnz, dtype=np.int64) % n
    gmax = np.full(m.shape[0] * n, -np.inf)
    np.maximum.at(gmax, key, m.data)
    thr = gmax.reshape(m.shape[0], n).min(axis=1)
    thr[~big] = -np.inf
    survivors: BoolArray = m.data >= thr[rows]
    return survivors


def _select_top_csr(m: sp.csr_matrix, n: int) -> tuple[IntArray, FloatArray, IntArray]:
    """Top ``n`` entries per row of a CSR matrix (ties: smaller column)."""
    rows = _row_of_entries(m)
    keep = _prune(m, n, rows)
    return _select_top(rows[keep], m.indices[keep].astype(np.int64), m.data[keep].astype(np.float64), m.shape[0], n)


def _exclusion_keys(exclude: sp.csr_matrix | None, n_cols: int) -> IntArray | None:
    if exclude is None or exclude.nnz == 0:
        return None
    return np.sort(_row_of_entries(exclude) * n_cols + exclude.indices.astype(np.int64))


def _not_excluded(rows: IntArray, cols: IntArray, keys: IntArray | None, n_cols: int) -> BoolArray:
    if keys is None:
        return np.ones(len(rows), dtype=bool)
    k = rows * n_cols + cols
    pos = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
    out: BoolArray = keys[pos] != k
    return out


def _top_dense_matrix(mat: npt.NDArray[np.float64], n: int) -> tuple[IntArray, FloatArray]:
    """Exact top ``n`` per row of a dense matrix (-inf = not allowed), ties to the smaller column."""
    b, n_cols = mat.shape
    out_c = np.full((b, n), -1, dtype=np.int64)
    out_v = np.full((b, n), np.nan)
    if b == 0 or n_cols == 0:
        return out_c, out_v
    m = min(n, n_cols)
    if m < n_cols:
        # the m smallest of -mat, with the products not allowed (-inf) as NaN, which partitioning puts last:
        # numpy's introselect degrades when most of a row is one repeated value on the low side of the split
        # (measured on Online Retail: rows 70-85% -inf took 0.5 s per 1,000 x 3,659 block, 10x this way)
        neg = np.negative(mat)
        neg[neg == np.inf] = np.nan
        idx = np.argpartition(neg, m - 1, axis=1)[:, :m]
        del neg
    else:
        idx = np.broadcast_to(np.arange(n_cols), (b, n_cols)).copy()
    vals = np.take_along_axis(mat, idx, axis=1)
    if m < n_cols:
        # rows where the m-th value is shared with a product left out: settle the tie by column, exactly
        low = vals.min(axis=1)
        amb = np.flatnonzero(((mat >= low[:, None]).sum(axis=1) > m) & np.isfinite(low))
        for r in amb:
            row = mat[r]
            order = np.lexsort((np.arange(n_cols), -row))[:m]
            idx[r], vals[r] = order, row[order]
    order = np.lexsort((idx, -vals), axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    ok = np.isfinite(vals)
    out_c[:, :m] = np.where(ok, idx, -1)
    out_v[:, :m] = np.where(ok, vals, np.nan)
    # padding after the valid entries (valid ones come first: -inf sorts last)
    return out_c, out_v


def _dense_scores(
    s: Scores, rows_sel: IntArray, allowed: BoolArray | None, exclude: sp.csr_matrix | None, n_cols: int
) -> npt.NDArray[np.float64]:
    """The full score matrix of the selected rows (-inf where a product may not be recommended)."""
    b = len(rows_sel)
    if s.prior is not None:
        grp = s.group[rows_sel] if s.group is not None else np.zeros(b, dtype=np.int64)
        dense = s.prior[grp].astype(np.float64)
    elif s.dense is not None:
        dense = np.zeros((b, n_cols), dtype=np.float64)
    else:
        dense = np.full((b, n_cols), -np.inf)
    if s.dense is not None:
        dense += s.dense[rows_sel]
    if s.personal is not None:
        p = take_rows(s.personal, rows_sel)[0]
        pr, pc = _row_of_entries(p), p.indices
        # entries are unique per (row, column), so fancy-index assignment is exact
        if s.dense is None and s.prior is None:
            dense[pr, pc] = p.data
        else:
            dense[pr, pc] += p.data
    if allowed is not None:
        dense[:, ~allowed] = -np.inf
    if exclude is not None:
        e = take_rows(exclude, rows_sel)[0]
        dense[_row_of_entries(e), e.indices] = -np.inf
    return dense


def _block(n_cols: int) -> int:
    """Rows per dense block (about 4 million cells)."""
    return max(1, 4_000_000 // max(n_cols, 1))


def _top_n(
    s: Scores, n_rows: int, n_cols: int, n: int, allowed: BoolArray | None, exclude: sp.csr_matrix | None
) -> tuple[IntArray, FloatArray]:
    """Top ``n`` columns per row of the scores ``s`` (personal + dense + prior[group]) among allowed,
    not excluded columns; ties go to the smaller column index.

    Dense models, and personal scores that fill more than a twentieth of the matrix, go through dense blocks
    (exact). Otherwise the candidates are the personal entries plus each group's best ``2n + 20`` prior
    products; a row is recomputed densely when a product outside its candidates could still belong to its top
    n (fewer than n candidates left after exclusions, or the n-th score not above the best prior score left
    out)."""
    personal_nnz = s.personal.nnz if s.personal is not None else 0
    if s.dense is not None or personal_nnz > 0.05 * n_rows * n_cols:
        out_c = np.full((n_rows, n), -1, dtype=np.int64)
        out_v = np.full((n_rows, n), np.nan)
        step = _block(n_cols)
        for a in range(0, n_rows, step):
            rows_sel = np.arange(a, min(n_rows, a + step))
            c, v = _top_dense_matrix(_dense_scores(s, rows_sel, allowed, exclude, n_cols), n)
            out_c[rows_sel], out_v[rows_sel] = c, v
        return out_c, out_v
    grp = None
    threshold = None
    cand = sp.csr_matrix((n_rows, n_cols))
    if s.personal is not None and s.personal.nnz:
        p = s.personal
        cand = sp.csr_matrix(p, dtype=np.float64, copy=False)
        if s.prior is not None:
            # personal + prior in a new data array (indices shared; the personal matrix itself is unchanged)
            grp = s.group if s.group is not None else np.zeros(n_rows, dtype=np.int64)
            data = cand.data + s.prior[grp[_row_of_entries(cand)], cand.indices]
            cand = sp.csr_matrix((data, cand.indices, cand.indptr), shape=cand.shape)
    if s.prior is not None:
        grp = s.group if s.group is not None else np.zeros(n_rows, dtype=np.int64)
        prior = s.prior.astype(np.float64, copy=True)
        if allowed is not None:
            prior[:, ~allowed] = -np.inf
        t = min(n_cols, 2 * n + 20)
        # each group's best t products (ties: smaller column), and the score of the t-th
        order = np.lexsort((np.broadcast_to(np.arange(n_cols), prior.shape), -prior), axis=1)[:, :t]
        top_vals = np.take_along_axis(prior, order, axis=1)
        threshold = top_vals[:, -1] if t < n_cols else np.full(len(prior), -np.inf)
        gcols = order[grp]
        gvals = top_vals[grp]
        fin = np.isfinite(gvals)
        counts = fin.sum(axis=1)
        indptr = np.concatenate([[0], np.cumsum(counts)])
        g = sp.csr_matrix((gvals[fin], gcols[fin], indptr), shape=(n_rows, n_cols))
        g.sort_indices()
        # shift by one so that zero scores survive the sparse maximum; personal entries already include the
        # prior, so the maximum keeps them where both are present
        if cand.nnz:
            cand.data += 1.0
            g.data = g.data + 1.0
            cand = sp.csr_matrix(cand.maximum(g))
            cand.data -= 1.0
        else:
            cand = g
    rows = _row_of_entries(cand)
    ok = _not_excluded(rows, cand.indices.astype(np.int64), _exclusion_keys(exclude, n_cols), n_cols)
    if allowed is not None:
        ok &= allowed[cand.indices]
    if not ok.all():
        counts = np.bincount(rows[ok], minlength=n_rows)
        cand = sp.csr_matrix(
            (cand.data[ok], cand.indices[ok], np.concatenate([[0], np.cumsum(counts)])), shape=(n_rows, n_cols)
        )
    out_c, out_v, count = _select_top_csr(cand, n)
    if threshold is not None and grp is not None:
        last = out_v[:, n - 1]
        thr = threshold[grp]
        unsure = ((count < n) | ~(last > thr)) & np.isfinite(thr)
        idx = np.flatnonzero(unsure)
        step = _block(n_cols)
        for a in range(0, len(idx), step):
            part = idx[a : a + step]
            c, v = _top_dense_matrix(_dense_scores(s, part, allowed, exclude, n_cols), n)
            out_c[part], out_v[part] = c, v
    return out_c, out_v


# ---------------------------------------------------------------------- the recommender base class
REGISTRY: dict[str, type[Recommender]] = {}


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator: make a recommender loadable by name."""
    REGISTRY[cls.name] = cls
    return cls


def _check_fitted(model: Recommender) -> None:
    if getattr(model, "products_", None) is None:
        raise NotFittedError(f"{type(model).__name__} is not fitted yet; call fit(interactions) first")


class Recommender:
    """Base class: parameters in ``__init__``, learned attributes end in ``_`` (scikit-learn style)."""

    name: ClassVar[str] = "base"
    description: ClassVar[str] = ""
    #: "sparse" models score from the customer's own products and shared rows; "dense" ones score every product
    kind: ClassVar[str] = "sparse"
    #: what a customer without history gets: "prior" (a shared list) or "empty"
    cold_start: ClassVar[str] = "prior"
    #: numpy arrays (attributes) saved with the model, besides the common ones
    _arrays: ClassVar[tuple[str, ...]] = ()
    #: sparse matrices (attributes) saved with the model
    _sparse: ClassVar[tuple[str, ...]] = ()
    #: JSON-able fitted attributes saved with the model
    _fitted_json: ClassVar[tuple[str, ...]] = ()
    default_rebuy: ClassVar[Rebuy] = "often"
    #: only recommends products the customer bought (nothing to say in the new-items evaluation)
    only_bought: ClassVar[bool] = False
    #: scores depend only on the customer's segment (the history only removes bought products)
    history_free: ClassVar[bool] = False
    #: attributes holding fitted sub-models, saved in sub-folders
    _children: ClassVar[tuple[str, ...]] = ()

    products_: StrArray | None
    history_: Interactions | None

    def __init__(self, *, rebuy: Rebuy | None = None, rebuy_threshold: float | None = None) -> None:
        self.rebuy = rebuy
        self.rebuy_threshold = rebuy_threshold
        self.products_ = None
        self.history_ = None

    # -------------------------------------------------------------- parameters
    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {
            k: getattr(self, k)
            for k, p in sig.parameters.items()
            if k != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
        }

    def _check_params(self) -> None:
        if self.rebuy is not None and self.rebuy not in REBUY_VALUES:
            raise ConfigError(f"rebuy must be one of {list(REBUY_VALUES)}, got {self.rebuy!r}")
        if self.rebuy_threshold is not None and not 0 <= self.rebuy_threshold <= 1:
            raise ConfigError(f"rebuy_threshold must be within [0, 1], got {self.rebuy_threshold!r}")

    @property
    def rebuy_policy(self) -> Rebuy:
        return self.rebuy or self.default_rebuy

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if not isinstance(v, Recommender))
        return f"{type(self).__name__}({params})"

    # -------------------------------------------------------------- fit
    def fit(self, interactions: Interactions) -> Self:
        """Learn from ``interactions``; returns self."""
        if not isinstance(interactions, Interactions):
            raise DataError(f"fit expects shopseg.recommend.Interactions, got {type(interactions).__name__}")
        self._check_params()
        x = interactions
        self.products_ = x.products
        self.n_customers_ = int(x.n_customers)
        binary = x.matrix("binary")
        self.buyers_ = np.asarray(binary.sum(axis=0)).ravel().astype(np.float64)
        rebuyers = np.asarray((x.orders >= 2).sum(axis=0)).ravel().astype(np.float64)
        self.rebuy_rate_ = np.divide(rebuyers, self.buyers_, out=np.zeros_like(rebuyers), where=self.buyers_ > 0)
        eligible = self.buyers_ >= MIN_REBUY_BUYERS
        if self.rebuy_threshold is not None:
            thr = float(self.rebuy_threshold)
        elif eligible.any():
            thr = float(np.median(self.rebuy_rate_[eligible]))
        else:
            thr = 1.0
        self.rebuy_threshold_ = thr
        # a product nobody re-bought is never "often re-bought", even when the threshold is 0
        self.rebuyable_ = (self.rebuy_rate_ >= thr) & (self.rebuy_rate_ > 0) & eligible
        self.history_ = x
        self._fit(x)
        return self

    def _fit(self, x: Interactions) -> None:
        """Model-specific learning."""

    # -------------------------------------------------------------- scoring
    def _scores(self, h: Interactions) -> Scores:
        """Scores of a batch of customers with histories ``h`` (rows aligned with the batch)."""
        raise NotImplementedError

    def _exclusion(self, h: Interactions, rebuy: Rebuy) -> sp.csr_matrix | None:
        """The (customer, product) pairs that may not be recommended (new arrays: the history's index arrays
        are shared with score matrices and must not change)."""
        if rebuy == "always" or h.orders.nnz == 0:
            return None
        m = h.matrix("binary")
        if rebuy == "often":
            keep = ~self.rebuyable_[m.indices]
            counts = np.bincount(_row_of_entries(m)[keep], minlength=m.shape[0])
            m = sp.csr_matrix(
                (np.ones(int(keep.sum())), m.indices[keep], np.concatenate([[0], np.cumsum(counts)])),
                shape=m.shape,
            )
        return m

    def _history_for(self, customer_ids: StrArray, history: Interactions | None) -> Interactions:
        assert self.history_ is not None and self.products_ is not None
        base = history.with_products(self.products_) if history is not None else self.history_
        return base.rows(base.customer_codes(customer_ids))

    def recommend(
        self,
        customer_ids: Sequence[str] | StrArray,
        n: int = 10,
        *,
        history: Interactions | None = None,
        segments: Sequence[int] | IntArray | None = None,
        rebuy: Rebuy | None = None,
        allowed: BoolArray | None = None,
    ) -> tuple[StrArray, FloatArray]:
        """Top ``n`` products for each customer: ``(product_ids, scores)``, each ``(len(customer_ids), n)``.

        ``history`` gives the customers' interactions (default: what the model was fitted on; customers in
        neither are cold starts); ``segments`` their segments (default: from the history); ``rebuy``
        overrides the model's re-buy policy; ``allowed`` is a mask over the model's products (business
        filters).
        """
        codes, scores, _ = self.recommend_codes(
            customer_ids, n, history=history, segments=segments, rebuy=rebuy, allowed=allowed
        )
        assert self.products_ is not None
        ids = np.where(codes >= 0, self.products_[np.maximum(codes, 0)], "")
        return ids.astype(np.str_), scores

    def recommend_codes(
        self,
        customer_ids: Sequence[str] | StrArray,
        n: int = 10,
        *,
        history: Interactions | None = None,
        segments: Sequence[int] | IntArray | None = None,
        rebuy: Rebuy | None = None,
        allowed: BoolArray | None = None,
        with_source: bool = False,
    ) -> tuple[IntArray, FloatArray, StrArray | None]:
        """As :meth:`recommend`, with product positions (-1 = padding) instead of ids, and optionally the
        source of each entry ("" for padding)."""
        _check_fitted(self)
        if n < 1:
            raise ConfigError(f"n must be at least 1, got {n}")
        if rebuy is not None and rebuy not in REBUY_VALUES:
            raise ConfigError(f"rebuy must be one of {list(REBUY_VALUES)}, got {rebuy!r}")
        assert self.products_ is not None
        if allowed is not None and len(allowed) != len(self.products_):
            raise DataError(f"allowed has {len(allowed)} values for the model's {len(self.products_)} products")
        ids = _as_str_array(customer_ids)
        seg = None if segments is None else np.asarray(segments, dtype=np.int64)
        if seg is not None and len(seg) != len(ids):
            raise DataError(f"segments has {len(seg)} values for {len(ids)} customers")
        out_c = np.full((len(ids), n), -1, dtype=np.int64)
        out_v = np.full((len(ids), n), np.nan)
        sources: StrArray | None = np.full((len(ids), n), "", dtype=object).astype(np.str_) if with_source else None
        step = BATCH if self.kind == "sparse" else max(256, 2_000_000 // max(1, len(self.products_)))
        for a in range(0, len(ids), step):
            h = self._history_for(ids[a : a + step], history)
            if seg is not None:
                h.segments = seg[a : a + step]
            c, v, src = self._recommend_batch(h, n, rebuy or self.rebuy_policy, allowed, with_source)
            out_c[a : a + step], out_v[a : a + step] = c, v
            if sources is not None and src is not None:
                sources = _assign_str(sources, slice(a, a + step), src)
        return out_c, out_v, sources

    def _recommend_batch(
        self, h: Interactions, n: int, rebuy: Rebuy, allowed: BoolArray | None, with_source: bool
    ) -> tuple[IntArray, FloatArray, StrArray | None]:
        s = self._scores(h)
        c, v = _top_n(s, h.n_customers, len(h.products), n, allowed, self._exclusion(h, rebuy))
        return c, v, (_sources(s, c) if with_source else None)

    # -------------------------------------------------------------- similar items
    def similar_items(self, product_ids: Sequence[str] | StrArray, n: int = 10) -> tuple[StrArray, FloatArray]:
        """The ``n`` products most similar to each product: ``(product_ids, scores)``, each (len, n)."""
        _check_fitted(self)
        sim = self._similarity()
        if sim is None:
            raise NotImplementedError(f"{type(self).__name__} has no notion of similar products")
        assert self.products_ is not None
        codes = _codes(self.products_, _as_str_array(product_ids))
        rows, _ = take_rows(sp.csr_matrix(sim), codes)
        r = _row_of_entries(rows)
        c = rows.indices.astype(np.int64)
        keep = c != codes[r]
        cc, vv, _ = _select_top(r[keep], c[keep], rows.data[keep].astype(np.float64), len(codes), n)
        ids = np.where(cc >= 0, self.products_[np.maximum(cc, 0)], "")
        return ids.astype(np.str_), vv

    def _similarity(self) -> sp.csr_matrix | None:
        return None

    # -------------------------------------------------------------- persistence
    def save(self, directory: str | Path, *, include_history: bool = True) -> Path:
        """Write ``recommender.json`` and the arrays as ``.npy`` (no pickle) into ``directory``."""
        _check_fitted(self)
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray[Any, Any]] = {
            "products": np.asarray(self.products_, dtype=np.str_),
            "buyers": self.buyers_,
            "rebuy_rate": self.rebuy_rate_,
            "rebuyable": self.rebuyable_,
        }
        for a in self._arrays:
            value = getattr(self, a)
            if value is not None:
                arrays[a] = np.asarray(value)
        for m in self._sparse:
            value = getattr(self, m)
            if value is not None:
                value = sp.csr_matrix(value)
                arrays[f"{m}.data"], arrays[f"{m}.indices"], arrays[f"{m}.indptr"] = (
                    value.data,
                    value.indices,
                    value.indptr,
                )
                arrays[f"{m}.shape"] = np.asarray(value.shape, dtype=np.int64)
        h = self.history_
        if include_history and h is not None:
            arrays.update(
                {
                    "history.customers": np.asarray(h.customers, dtype=np.str_),
                    "history.orders.data": h.orders.data,
                    "history.orders.indices": h.orders.indices,
                    "history.orders.indptr": h.orders.indptr,
                    "history.quantity": h.quantity,
                    "history.recency_days": h.recency_days,
                    "history.weight": h.weight,
                }
            )
            if h.segments is not None:
                arrays["history.segments"] = h.segments
        params = {k: v for k, v in self.get_params().items() if not isinstance(v, Recommender)}
        children = {k: getattr(self, k) for k in self._children if isinstance(getattr(self, k, None), Recommender)}
        for k, child in children.items():
            child.save(d / k, include_history=False)
        payload = {
            "format": "shopseg-recommender",
            "version": 1,
            "class": self.name,
            "params": params,
            "children": sorted(children),
            "fitted": {
                "n_customers": self.n_customers_,
                "rebuy_threshold": self.rebuy_threshold_,
                **{k: _jsonable(getattr(self, k)) for k in self._fitted_json},
            },
            "history": None
            if h is None or not include_history
            else {"as_of": h.as_of.isoformat(), "half_life_days": h.half_life_days},
            "arrays": sorted(arrays),
        }
        for name, arr in arrays.items():
            if arr.dtype == object:
                raise TypeError(f"array {name} has dtype object; it would need pickle")
            tmp = d / f"{name}.tmp.npy"
            np.save(tmp, arr, allow_pickle=False)
            tmp.replace(d / f"{name}.npy")
        tmp = d / "recommender.json.tmp"
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False), encoding="utf-8")
        tmp.replace(d / "recommender.json")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> Recommender:
        """Read a model written by :meth:`save` (any registered class)."""
        d = Path(directory)
        meta_path = d / "recommender.json"
        if not meta_path.is_file():
            raise NotFittedError(f"no saved recommender in '{d}' (recommender.json missing)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != "shopseg-recommender":
            raise NotFittedError(f"'{meta_path}' is not a shopseg recommender")
        klass = REGISTRY.get(meta["class"])
        if klass is None:
            raise NotFittedError(f"unknown recommender class {meta['class']!r} in '{meta_path}'")
        params = dict(meta["params"])
        children = {k: Recommender.load(d / k) for k in meta.get("children", [])}
        init_names = set(inspect.signature(klass.__init__).parameters)
        params.update({k: v for k, v in children.items() if k in init_names})
        model = klass(**params)
        for k, child in children.items():
            setattr(model, k, child)

        def arr(name: str) -> np.ndarray[Any, Any]:
            loaded: np.ndarray[Any, Any] = np.load(d / f"{name}.npy", allow_pickle=False)
            return loaded

        names = set(meta["arrays"])
        model.products_ = arr("products")
        model.buyers_ = arr("buyers")
        model.rebuy_rate_ = arr("rebuy_rate")
        model.rebuyable_ = arr("rebuyable")
        model.n_customers_ = int(meta["fitted"]["n_customers"])
        model.rebuy_threshold_ = float(meta["fitted"]["rebuy_threshold"])
        for k in klass._fitted_json:
            setattr(model, k, meta["fitted"].get(k))
        for a in klass._arrays:
            setattr(model, a, arr(a) if a in names else None)
        for m in klass._sparse:
            if f"{m}.data" in names:
                shape = tuple(int(x) for x in arr(f"{m}.shape"))
                setattr(
                    model, m, sp.csr_matrix((arr(f"{m}.data"), arr(f"{m}.indices"), arr(f"{m}.indptr")), shape=shape)
                )
            else:
                setattr(model, m, None)
        h = meta.get("history")
        if h is not None:
            cust = arr("history.customers")
            orders = sp.csr_matrix(
                (arr("history.orders.data"), arr("history.orders.indices"), arr("history.orders.indptr")),
                shape=(len(cust), len(model.products_)),
            )
            model.history_ = Interactions(
                customers=cust,
                products=model.products_,
                orders=orders,
                quantity=arr("history.quantity"),
                recency_days=arr("history.recency_days"),
                weight=arr("history.weight"),
                as_of=datetime.fromisoformat(h["as_of"]),
                half_life_days=float(h["half_life_days"]),
                segments=arr("history.segments") if "history.segments" in names else None,
            )
        else:
            model.history_ = _empty_history(model.products_)
        model._after_load()
        return model

    def _after_load(self) -> None:
        """Rebuild derived state after :meth:`load`."""


def _empty_history(products: StrArray) -> Interactions:
    return Interactions(
        customers=np.zeros(0, dtype=np.str_),
        products=products,
        orders=sp.csr_matrix((0, len(products))),
        quantity=np.zeros(0),
        recency_days=np.zeros(0),
        weight=np.zeros(0),
        as_of=datetime(1970, 1, 1),
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def _sources(s: Scores, cols: IntArray) -> StrArray:
    """Which part put each selected product on the list: the sparse part with the largest value there, else
    the prior ("" for padding)."""
    n_rows, n = cols.shape
    names = list(s.parts)
    prior_names = s.prior_source if s.prior_source is not None else [s.source]
    labels = np.array([*names, *prior_names, ""], dtype=object)
    out = np.full((n_rows, n), len(labels) - 1, dtype=np.int64)
    r, k = np.nonzero(cols >= 0)
    if len(r):
        c = cols[r, k]
        best = np.zeros(len(r))
        label = np.full(len(r), -1, dtype=np.int64)
        for j, name in enumerate(names):
            v = np.asarray(s.parts[name][r, c]).ravel()
            better = v > best
            best = np.where(better, v, best)
            label = np.where(better, j, label)
        grp = s.group[r] if s.group is not None and s.prior_source is not None else np.zeros(len(r), dtype=np.int64)
        out[r, k] = np.where(label >= 0, label, len(names) + grp)
    return labels[out].astype(np.str_)


def _assign_str(target: StrArray, rows: slice, values: StrArray) -> StrArray:
    """Write string rows into a fixed-width string array, widening it when the values are longer."""
    width = max(target.dtype.itemsize, values.dtype.itemsize) // 4
    if width * 4 > target.dtype.itemsize:
        target = target.astype(f"<U{width}")
    target[rows] = values
    return target


def iter_batches(n: int, size: int) -> Iterator[slice]:
    """Slices of ``range(n)`` of at most ``size`` items."""
    for a in range(0, n, size):
        yield slice(a, min(n, a + size))


def row_normalise(m: sp.csr_matrix, *, scale: float = 1.0, copy: bool = True) -> sp.csr_matrix:
    """Each row divided by its largest value and multiplied by ``scale`` (rows of zeros stay zero); in place
    when ``copy`` is False."""
    m = sp.csr_matrix(m, copy=copy)
    if m.nnz == 0:
        return m
    lens = np.diff(m.indptr)
    nonempty = lens > 0
    mx = np.zeros(m.shape[0])
    mx[nonempty] = np.maximum.reduceat(m.data, m.indptr[:-1][nonempty])
    factor = np.divide(scale, mx, out=np.zeros_like(mx), where=mx > 0)
    m.data *= np.repeat(factor, lens)
    return m


def normalise(v: FloatArray) -> FloatArray:
    """A vector divided by its maximum (zeros stay zeros)."""
    mx = float(np.max(v)) if len(v) else 0.0
    return v / mx if mx > 0 else np.zeros_like(v, dtype=np.float64)


def group_rows(
    prior_rows: Mapping[int, FloatArray], default: FloatArray, segments: IntArray | None
) -> tuple[FloatArray, IntArray, list[int]]:
    """Stack per-segment prior rows (+ the default for unknown segments) and map each customer to its row."""
    keys = sorted(prior_rows)
    prior = np.vstack([prior_rows[k] for k in keys] + [default]) if keys else default[None, :]
    lookup = {k: i for i, k in enumerate(keys)}
    n_def = len(keys)
    if segments is None:
        grp = np.zeros(0, dtype=np.int64)
    else:
        grp = np.array([lookup.get(int(s), n_def) for s in segments], dtype=np.int64)
    return prior, grp, keys
