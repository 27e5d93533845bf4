"""Offline evaluation of recommenders on a time split, in batches so memory stays bounded.

Protocol: fit on everything before a cut-off (``as_of - holdout_days``); the *users* are the customers who
bought on both sides of it; each user's *truth* is the distinct products they bought in the hold-out that
exist in the training data. Two modes:

* ``all``: every such product counts, and each recommender follows its own re-buy policy;
* ``new``: only products the user never bought before count (users without any are left out), and every
  recommender must exclude the products the user already bought.

Metrics for a user with truth t_mat and list L (k first entries; a shorter list counts its missing places as
misses), averaged over users:

* ``precision@k`` = |L ∩ t_mat| / k; ``recall@k`` = |L ∩ t_mat| / |t_mat|; ``hit_rate@k`` = 1 if L ∩ t_mat is not empty;
* ``ndcg@k`` = DCG / IDCG with DCG = Σ_{r ≤ k, L_r ∈ t_mat} 1 / log2(r + 1) and IDCG the DCG of a perfect list
  (min(|t_mat|, k) hits first);
* ``map@k`` = (1 / min(|t_mat|, k)) Σ_{r ≤ k, L_r ∈ t_mat} precision@r;
* ``coverage@k`` (over all users) = distinct products in any list / products in the training catalogue;
* ``novelty@k`` = mean over every listed product of −log2(share of training customers who bought it):
  higher = less obvious products.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from shopseg.errors import ConfigError, DataError
from shopseg.recommend.base import BoolArray, FloatArray, IntArray, Interactions, Recommender

__all__ = [
    "KS",
    "METRICS",
    "MODES",
    "Evaluation",
    "evaluate",
    "parse_metric",
    "time_split",
    "user_metrics",
]

KS: tuple[int, ...] = (5, 10, 20)
MODES: tuple[str, ...] = ("all", "new")
#: per-user metrics (averaged) and list-level metrics (coverage, novelty)
METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage", "novelty")
_USER_METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hit_rate")
#: per-segment tables use this k
SEGMENT_K = 10


def parse_metric(text: str) -> tuple[str, int]:
    """``"ndcg@10"`` → ``("ndcg", 10)``; the metric must be one of :data:`METRICS` and k one of :data:`KS`."""
    name, _, k = text.partition("@")
    if name not in METRICS or not k.isdigit() or int(k) not in KS:
        raise ConfigError(
            f"metric {text!r} is not known; use <metric>@<k> with metric in {list(METRICS)} and k in {list(KS)}, "
            "e.g. 'ndcg@10'"
        )
    return name, int(k)


@dataclass
class Evaluation:
    """Result of :func:`evaluate`: one table per mode (a row per method, a column per metric@k), per-segment
    metrics at k = 10, the number of users per mode and facts about the split."""

    tables: dict[str, pd.DataFrame]
    per_segment: pd.DataFrame
    users: dict[str, int]
    info: dict[str, Any] = field(default_factory=dict)

    def table_at(self, mode: str = "all", k: int = 10) -> pd.DataFrame:
        """The mode's table with the metrics at ``k`` also under their plain names (``recall`` = ``recall@k``)."""
        t = self.tables[mode].copy()
        for m in METRICS:
            if f"{m}@{k}" in t:
                t[m] = t[f"{m}@{k}"]
        return t

    def best(self, metric: str = "ndcg@10", mode: str = "all", methods: Sequence[str] | None = None) -> str | None:
        """The method with the highest ``metric`` in ``mode`` (ties: the earlier method), or None."""
        parse_metric(metric)
        t = self.tables.get(mode)
        if t is None or t.empty:
            return None
        if methods is not None:
            t = t[t["method"].isin(list(methods))]
        t = t[t[metric].notna()]
        if t.empty:
            return None
        return str(t.loc[t[metric].idxmax(), "method"])


def user_metrics(hits: BoolArray, n_true: IntArray, k: int) -> dict[str, FloatArray]:
    """Per-user precision, recall, ndcg, map and hit rate at ``k`` from a (users × ≥k) hit matrix (True where
    the r-th listed product is in the user's truth) and the size of each truth."""
    h = hits[:, :k].astype(np.float64)
    if h.shape[1] < k:
        h = np.hstack([h, np.zeros((h.shape[0], k - h.shape[1]))])
    n_true = np.asarray(n_true, dtype=np.float64)
    n_hits = h.sum(axis=1)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = h @ disc
    ideal = np.concatenate([[0.0], np.cumsum(disc)])
    idcg = ideal[np.minimum(n_true, k).astype(np.int64)]
    prec_at_r = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    ap = (prec_at_r * h).sum(axis=1) / np.maximum(np.minimum(n_true, k), 1)
    return {
        "precision": n_hits / k,
        "recall": np.divide(n_hits, n_true, out=np.zeros_like(n_hits), where=n_true > 0),
        "ndcg": np.divide(dcg, idcg, out=np.zeros_like(dcg), where=idcg > 0),
        "map": ap,
        "hit_rate": (n_hits > 0).astype(np.float64),
    }


def time_split(
    lines: pd.DataFrame,
    holdout_days: int = 30,
    as_of: datetime | None = None,
    *,
    half_life_days: float = 60.0,
    segments: Mapping[str, int] | pd.Series | None = None,
) -> tuple[Interactions, pd.DataFrame]:
    """Split order lines (``customer_id, product_id, ts`` [, ``order_id, quantity``]) at ``as_of -
    holdout_days`` (``as_of`` default: midnight after the last line): training interactions as of the cut-off,
    and the hold-out's distinct (customer_id, product_id) pairs."""
    if holdout_days < 1:
        raise ConfigError(f"holdout_days must be at least 1, got {holdout_days}")
    f = lines[lines["customer_id"].notna() & lines["product_id"].notna()].copy()
    f["ts"] = pd.to_datetime(f["ts"])
    if f.empty:
        raise DataError("no order lines with a customer and a product to split")
    if as_of is None:
        as_of = (f["ts"].max().normalize() + pd.Timedelta(days=1)).to_pydatetime()
    cutoff = as_of - timedelta(days=holdout_days)
    train = Interactions.from_lines(f, cutoff, half_life_days=half_life_days, segments=segments)
    held = f[(f["ts"] >= pd.Timestamp(cutoff)) & (f["ts"] < pd.Timestamp(as_of))]
    truth = held[["customer_id", "product_id"]].astype(str).drop_duplicates().reset_index(drop=True)
    return train, truth


def _truth_matrix(train: Interactions, truth: pd.DataFrame | sp.csr_matrix) -> sp.csr_matrix:
    if isinstance(truth, sp.csr_matrix):
        if truth.shape != train.orders.shape:
            raise DataError(f"truth matrix is {truth.shape}, expected {train.orders.shape}")
        t = truth.copy()
    else:
        if not {"customer_id", "product_id"} <= set(truth.columns):
            raise DataError("truth needs the columns customer_id and product_id")
        r = train.customer_codes(truth["customer_id"].astype(str).to_numpy())
        c = train.product_codes(truth["product_id"].astype(str).to_numpy())
        ok = (r >= 0) & (c >= 0)
        t = sp.csr_matrix((np.ones(int(ok.sum())), (r[ok], c[ok])), shape=train.orders.shape)
    t.sum_duplicates()
    t.data[:] = 1.0
    t.eliminate_zeros()
    t.sort_indices()
    return t


def _keys(m: sp.csr_matrix) -> IntArray:
    rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
    return np.sort(rows * m.shape[1] + m.indices.astype(np.int64))


def evaluate(
    models: Mapping[str, Recommender],
    train: Interactions,
    truth: pd.DataFrame | sp.csr_matrix,
    *,
    ks: Sequence[int] = KS,
    modes: Sequence[str] = MODES,
    batch_size: int = 5000,
    allowed: BoolArray | None = None,
    progress: Callable[[str, str], None] | None = None,
    workers: int = 1,
) -> Evaluation:
    """Score fitted ``models`` (name → recommender fitted on ``train``) against ``truth`` (hold-out pairs, or
    a train-shaped 0/1 matrix). Users are the ``train`` customers with a non-empty truth in each mode.
    ``workers`` > 1 scores that many models at once on threads (NumPy and SciPy release the interpreter lock
    in their array work); the results do not depend on it."""
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ConfigError(f"unknown evaluation mode(s) {bad}; use {list(MODES)}")
    if not ks or any(k < 1 for k in ks):
        raise ConfigError(f"ks must be positive integers, got {list(ks)}")
    ks = sorted(set(int(k) for k in ks))
    t_all = _truth_matrix(train, truth)
    bought = train.matrix("binary")
    t_new = sp.csr_matrix(t_all - t_all.multiply(bought))
    t_new.eliminate_zeros()
    buyers = np.asarray(bought.sum(axis=0)).ravel()
    catalogue = buyers > 0
    if allowed is not None:
        catalogue &= allowed
    p = np.maximum(buyers, 1.0) / max(train.n_customers, 1)
    info_bits = -np.log2(np.minimum(p, 1.0))
    seconds: dict[str, float] = {}
    tables: dict[str, pd.DataFrame] = {}
    seg_rows: list[dict[str, Any]] = []
    users: dict[str, int] = {}
    for mode in modes:
        t_mat = t_all if mode == "all" else t_new
        rows = np.flatnonzero(np.diff(t_mat.indptr) > 0)
        users[mode] = len(rows)
        task = _ModeTask(mode, train, t_mat, rows, ks, batch_size, allowed, info_bits, catalogue, _keys(t_mat))
        todo = [(name, model) for name, model in models.items() if not (mode == "new" and model.only_bought)]
        if progress:
            for name, _ in todo:
                progress(mode, name)
        if workers > 1 and len(todo) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
                results = list(pool.map(task.score, *zip(*todo, strict=True)))
        else:
            results = [task.score(name, model) for name, model in todo]
        table_rows = []
        for (name, _), (row, segs, took) in zip(todo, results, strict=True):
            seconds[name] = round(seconds.get(name, 0.0) + took, 3)
            table_rows.append(row)
            seg_rows += segs
        cols = ["method", "users"] + [f"{m}@{k}" for k in ks for m in METRICS]
        tables[mode] = pd.DataFrame(table_rows, columns=cols)
    seg_cols = ["mode", "method", "segment", "users"] + [f"{m}@{SEGMENT_K}" for m in _USER_METRICS]
    per_segment = pd.DataFrame(seg_rows, columns=seg_cols)
    repurchase = float(t_all.multiply(bought).sum() / max(t_all.sum(), 1))
    info = {
        "catalogue": int(catalogue.sum()),
        "train_customers": int(train.n_customers),
        "truth_pairs": int(t_all.nnz),
        "repurchase_share": repurchase,
        "ks": list(ks),
        "seconds": seconds,
    }
    return Evaluation(tables=tables, per_segment=per_segment, users=users, info=info)


@dataclass
class _ModeTask:
    """What scoring one model in one evaluation mode needs (shared read-only between threads)."""

    mode: str
    train: Interactions
    t_mat: sp.csr_matrix
    rows: IntArray
    ks: list[int]
    batch_size: int
    allowed: BoolArray | None
    info_bits: FloatArray
    catalogue: BoolArray
    keys: IntArray

    def score(self, name: str, model: Recommender) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
        """The model's table row, its per-segment rows and the seconds it took."""
        started = time.perf_counter()
        train, rows, ks, keys = self.train, self.rows, self.ks, self.keys
        kmax = max(ks)
        n_true_all = np.diff(self.t_mat.indptr)[rows]
        per_user: dict[int, dict[str, list[FloatArray]]] = {k: {m: [] for m in _USER_METRICS} for k in ks}
        seen = {k: np.zeros(train.n_products, dtype=bool) for k in ks}
        novelty_sum = dict.fromkeys(ks, 0.0)
        novelty_n = dict.fromkeys(ks, 0)
        for a in range(0, len(rows), self.batch_size):
            r = rows[a : a + self.batch_size]
            codes, _, _ = model.recommend_codes(
                train.customers[r],
                kmax,
                history=train,
                rebuy="never" if self.mode == "new" else None,
                allowed=self.allowed,
            )
            valid = codes >= 0
            k_ = r[:, None] * train.n_products + np.maximum(codes, 0)
            pos = np.minimum(np.searchsorted(keys, k_), len(keys) - 1)
            hits = valid & (keys[pos] == k_)
            for k in ks:
                for m, v in user_metrics(hits, n_true_all[a : a + self.batch_size], k).items():
                    per_user[k][m].append(v)
                top = codes[:, :k][valid[:, :k]]
                seen[k][top] = True
                novelty_sum[k] += float(self.info_bits[top].sum())
                novelty_n[k] += len(top)
        took = time.perf_counter() - started
        row: dict[str, Any] = {"method": name, "users": len(rows)}
        values: dict[int, dict[str, FloatArray]] = {}
        for k in ks:
            values[k] = {m: np.concatenate(per_user[k][m]) if per_user[k][m] else np.zeros(0) for m in _USER_METRICS}
            for m in _USER_METRICS:
                row[f"{m}@{k}"] = float(values[k][m].mean()) if len(values[k][m]) else float("nan")
            row[f"coverage@{k}"] = float(seen[k][self.catalogue].sum() / max(int(self.catalogue.sum()), 1))
            row[f"novelty@{k}"] = novelty_sum[k] / novelty_n[k] if novelty_n[k] else float("nan")
        segs: list[dict[str, Any]] = []
        seg = train.segments
        if seg is not None and SEGMENT_K in values and len(rows):
            s = seg[rows]
            for g in np.unique(s):
                sel = s == g
                segs.append(
                    {
                        "mode": self.mode,
                        "method": name,
                        "segment": int(g),
                        "users": int(sel.sum()),
                        **{f"{m}@{SEGMENT_K}": float(values[SEGMENT_K][m][sel].mean()) for m in _USER_METRICS},
                    }
                )
        return row, segs, took
