"""Recommendations for a run: evaluate the configured recommenders on a time split, pick the best, write lists
for every customer, similar products, bundles and per-segment banners — all on the run's backend.

Cost rules (so that the step stays affordable on shops with hundreds of thousands of customers):

* the evaluation scores a seeded sample of at most ``recommend.eval_users`` customers (drawn by the pipeline);
* recommenders learn from at most ``recommend.fit_customers`` customers (a seeded sample; the evaluated
  customers are always in it); item statistics and similarities from 10,000 customers are stable;
* the lists for every customer are computed in batches of :data:`LIST_BATCH` customers read from the
  backend, so memory stays bounded; neighbour and factor models (co-occurrence, item-kNN, blend, ALS, BPR)
  cost far more per customer than light ones (popularity, trending, segment top, own history), so above
  ``recommend.heavy_max_customers`` customers the lists come from the best light recommender instead, and the
  run says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from shopseg.backends.duckdb import DuckDBBackend
from shopseg.errors import ConfigError
from shopseg.recommend.base import BoolArray, Interactions, Recommender, StrArray
from shopseg.recommend.cooccurrence import bundles
from shopseg.recommend.evaluate import Evaluation, evaluate
from shopseg.recommend.filters import ItemFilter, allowed_products
from shopseg.recommend.knn import ItemKNN
from shopseg.recommend.methods import METHODS, make_recommender
from shopseg.recommend.sql import (
    NAMES_SQL,
    arrow,
    build_interactions,
    load_interactions,
    register_codes,
    segment_items,
    segment_top_products,
)

if TYPE_CHECKING:
    from shopseg.config import CleanConfig, RecommendConfig

__all__ = [
    "LIST_BATCH",
    "RecommendOutcome",
    "evaluate_run",
    "item_filter",
    "prepare_interactions",
    "run_recommendations",
]

log = logging.getLogger(__name__)

#: customers per batch when writing every customer's list
LIST_BATCH = 50_000


@dataclass
class RecommendOutcome:
    """What the recommend step produced: the method behind ``recommendations``, why, the evaluation (if any),
    JSON-able facts for the manifest, notes for the report, and the per-segment banner products."""

    method: str
    reason: str
    evaluation: Evaluation | None = None
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    segment_products: pd.DataFrame | None = None
    segment_products_lift: pd.DataFrame | None = None


def _ts(t: datetime) -> str:
    return f"TIMESTAMP '{t:%Y-%m-%d %H:%M:%S}'"


def item_filter(rc: RecommendConfig, clean: CleanConfig | None = None) -> ItemFilter:
    """The business filters of a run configuration."""
    codes = list(rc.exclude_products)
    patterns = [p for p in codes if "%" in p or "_" in p]
    codes = [c for c in codes if c not in patterns]
    if rc.exclude_non_products and clean is not None:
        codes += list(clean.non_product_codes)
        patterns += list(clean.non_product_patterns)
    return ItemFilter(
        exclude_codes=codes,
        exclude_patterns=patterns,
        exclude_categories=list(rc.exclude_categories),
        min_price=rc.min_price,
        max_price=rc.max_price,
        active_days=rc.active_days,
        catalogue=rc.catalogue,
    )


def _sorted_ids(backend: DuckDBBackend, sql: str) -> StrArray:
    t = arrow(backend, sql)
    ids = np.asarray(t.column(0).to_numpy(zero_copy_only=False), dtype=object).astype(str)
    return np.unique(ids)


def _build(methods: list[str], rc: RecommendConfig, threads: int, seed: int) -> dict[str, Recommender]:
    return {m: make_recommender(m, rc, threads=threads, seed=seed) for m in methods}


def _fit_all(
    models: dict[str, Recommender],
    x: Any,
    timings: dict[str, float],
    progress: Callable[[str], None] | None,
    workers: int = 1,
) -> None:
    knn = models.get("item_knn")

    def fit(name: str) -> None:
        model = models[name]
        t0 = time.perf_counter()
        blend_knn = getattr(model, "knn", None)
        if (
            isinstance(knn, ItemKNN)
            and knn.similarity_ is not None
            and isinstance(blend_knn, ItemKNN)
            and blend_knn.get_params() == knn.get_params()
        ):
            model.knn = knn  # type: ignore[attr-defined]
        model.fit(x)
        timings[f"fit_{name}"] = round(time.perf_counter() - t0, 3)

    # the models that reuse another's fit (a blend reuses the item-kNN) come last; the others are independent,
    # and the two heavy ones (sparse products, which release the interpreter lock) are fitted side by side
    later = [n for n, m in models.items() if hasattr(m, "knn")]
    first = [n for n in models if n not in later]
    heavy = [n for n in first if METHODS[n].kind != "light"] if workers > 1 else []
    if len(heavy) < 2:
        heavy = []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(heavy))), thread_name_prefix="shopseg-fit") as pool:
        pending = [pool.submit(fit, n) for n in heavy]
        for name in [n for n in first if n not in heavy]:
            if progress:
                progress(name)
            fit(name)
        for f in pending:
            f.result()
    for name in later:
        if progress:
            progress(name)
        fit(name)


def _evaluate(
    backend: DuckDBBackend,
    *,
    rc: RecommendConfig,
    as_of: datetime,
    segment_of: str,
    products: StrArray,
    filter_mask: BoolArray,
    seed: int,
    threads: int,
    timings: dict[str, float],
) -> tuple[Evaluation, dict[str, Any]]:
    cutoff = as_of - timedelta(days=rc.holdout_days)
    c, a = _ts(cutoff), _ts(as_of)
    t0 = time.perf_counter()
    backend.execute(
        "CREATE OR REPLACE TABLE ev_train_products AS SELECT product_id, count(*) AS buyers FROM interactions_all "
        "WHERE n_orders_train > 0 GROUP BY 1"
    )
    backend.execute(
        "CREATE OR REPLACE TABLE ev_truth AS SELECT DISTINCT t.customer_id, t.product_id FROM transactions t "
        f"SEMI JOIN {segment_of} s USING (customer_id) SEMI JOIN ev_train_products p USING (product_id) "
        f"WHERE t.ts >= {c} AND t.ts < {a}"
    )
    n_eval = int(backend.scalar(f"SELECT count(*) FROM {segment_of}"))
    extra = max(rc.fit_customers - n_eval, 0)
    backend.execute(
        "CREATE OR REPLACE TABLE ev_fit AS "
        f"SELECT customer_id FROM {segment_of} UNION ALL "
        "SELECT customer_id FROM (SELECT customer_id FROM segments "
        f"  WHERE customer_id NOT IN (SELECT customer_id FROM {segment_of}) "
        f"  ORDER BY hash(customer_id || '{seed}'), customer_id LIMIT {extra})"
    )
    fit_ids = _sorted_ids(backend, "SELECT customer_id FROM ev_fit")
    seg = backend.df(f"SELECT customer_id, segment FROM {segment_of}")
    seg_map = pd.Series(seg["segment"].to_numpy(), index=seg["customer_id"].astype(str))
    fit_seg = seg_map.reindex(fit_ids).fillna(-1).to_numpy(dtype=np.int64)
    register_codes(backend, "ev_fit_codes", fit_ids)
    train = load_interactions(
        backend,
        customers=fit_ids,
        products=products,
        customers_table="ev_fit_codes",
        products_table="rec_products",
        as_of=cutoff,
        half_life_days=rc.half_life_days,
        train=True,
        segments=fit_seg,
    )
    tt = arrow(
        backend,
        "SELECT c.code AS u, p.code AS i FROM ev_truth t JOIN ev_fit_codes c ON c.id = t.customer_id "
        "JOIN rec_products p ON p.id = t.product_id",
    )
    u = tt.column("u").to_numpy().astype(np.int64)
    i = tt.column("i").to_numpy().astype(np.int64)
    truth = sp.csr_matrix((np.ones(len(u)), (u, i)), shape=train.orders.shape)
    known = np.zeros(len(products), dtype=bool)
    kc = arrow(backend, "SELECT p.code FROM ev_train_products t JOIN rec_products p ON p.id = t.product_id")
    known[kc.column(0).to_numpy().astype(np.int64)] = True
    allowed = filter_mask & known
    timings["evaluation_data"] = round(time.perf_counter() - t0, 3)
    models = _build(list(rc.methods), rc, threads, seed)
    _fit_all(models, train, timings, None, workers=threads)
    t0 = time.perf_counter()
    ev = evaluate(models, train, truth, allowed=allowed, workers=threads)
    timings["evaluation_scoring"] = round(time.perf_counter() - t0, 3)
    timings.update({f"score_{k}": v for k, v in ev.info["seconds"].items()})
    info = {
        "cutoff": cutoff.isoformat(),
        "fit_customers": int(train.n_customers),
        "train_pairs": int(train.orders.nnz),
        "train_items": int(known.sum()),
    }
    return ev, info


def _final_method(rc: RecommendConfig, ev: Evaluation | None, n_customers: int, notes: list[str]) -> tuple[str, str]:
    if rc.method != "auto":
        method, reason = rc.method, f"set by recommend.method = {rc.method!r}"
    elif ev is not None and ev.best(rc.metric, rc.select_mode):
        method = str(ev.best(rc.metric, rc.select_mode))
        value = ev.tables[rc.select_mode].set_index("method").loc[method, rc.metric]
        reason = f"best {rc.metric} ({value:.4f}) on the time split ({rc.select_mode} items) among {len(rc.methods)}"
    else:
        method, reason = "blend", "the default (recommendations were not evaluated)"
    if METHODS[method].kind != "light" and n_customers > rc.heavy_max_customers:
        light = [m for m in rc.methods if METHODS[m].kind == "light"]
        fallback = (ev.best(rc.metric, rc.select_mode, light) if ev is not None else None) or "popularity"
        notes.append(
            f"{method} was chosen, but writing its lists for {n_customers:,} customers (above "
            f"recommend.heavy_max_customers = {rc.heavy_max_customers:,}) is too costly: the lists come from "
            f"{fallback}, the best light recommender"
        )
        reason = f"{method} would be {reason}, but {n_customers:,} customers are too many for it: best light one"
        method = fallback
    return method, reason


def _insert_lists(
    backend: DuckDBBackend, lo: int, codes: np.ndarray, scores: np.ndarray, sources: np.ndarray, names: dict[str, int]
) -> int:
    """Append one batch of lists (rows = customer codes from ``lo``) to ``rec_lists``."""
    r, k = np.nonzero(codes >= 0)
    labels, inverse = np.unique(sources[r, k], return_inverse=True)
    lookup = np.array([names.setdefault(str(nm), len(names)) for nm in labels], dtype=np.int32)
    table = pa.table(
        {
            "customer_code": pa.array((r + lo).astype(np.int32)),
            "rank": pa.array((k + 1).astype(np.int32)),
            "product_code": pa.array(codes[r, k].astype(np.int32)),
            "score": pa.array(scores[r, k].astype(np.float64)),
            "source_code": pa.array(lookup[inverse] if len(labels) else np.zeros(0, np.int32)),
        }
    )
    view = f"rec_batch_{lo}"
    backend.register(view, table)
    try:
        backend.execute(f"INSERT INTO rec_lists SELECT * FROM {view}")
    finally:
        backend.con.unregister(view)
    return len(r)


def _prior_candidates(
    model: Recommender, segments: np.ndarray, n: int, allowed: BoolArray
) -> tuple[BoolArray, np.ndarray, np.ndarray] | None:
    """For a model whose scores depend only on the segment (popularity, trending, segment top): the products
    that can reach a top ``n`` (each group's best 2n + 20 allowed ones), each customer's group, and the score of
    each group's last candidate. None for other models."""
    if not model.history_free:
        return None
    assert model.products_ is not None
    empty = Interactions(
        customers=np.full(len(segments), "", dtype=np.str_),
        products=model.products_,
        orders=sp.csr_matrix((len(segments), len(model.products_))),
        quantity=np.zeros(0),
        recency_days=np.zeros(0),
        weight=np.zeros(0),
        as_of=datetime(1970, 1, 1),
        segments=segments,
    )
    s = model._scores(empty)
    if s.prior is None or s.personal is not None or s.dense is not None:
        return None
    prior = np.where(allowed[None, :], s.prior, -np.inf)
    n_cols = prior.shape[1]
    t = min(n_cols, 2 * n + 20)
    order = np.lexsort((np.broadcast_to(np.arange(n_cols), prior.shape), -prior), axis=1)[:, :t]
    top = np.take_along_axis(prior, order, axis=1)
    mask = np.zeros(n_cols, dtype=bool)
    mask[order[np.isfinite(top)]] = True
    thr = top[:, -1] if t < n_cols else np.full(len(prior), -np.inf)
    grp = s.group if s.group is not None else np.zeros(len(segments), dtype=np.int64)
    return mask, grp, thr


def _write_lists(
    backend: DuckDBBackend,
    model: Recommender,
    *,
    rc: RecommendConfig,
    as_of: datetime,
    products: StrArray,
    filter_mask: BoolArray,
) -> int:
    """``recommendations`` for every customer of ``segments``, in batches read from the backend.

    For models whose lists depend only on the segment, only the purchases of the products that can reach a
    list are read (one query instead of one per batch); customers for whom that is not certain to be exact
    (too many of those products already bought) are recomputed from their whole history."""
    ids = _sorted_ids(backend, "SELECT customer_id FROM segments")
    seg = backend.df("SELECT customer_id, segment FROM segments")
    segs = pd.Series(seg["segment"].to_numpy(), index=seg["customer_id"].astype(str)).reindex(ids)
    segs_arr = segs.fillna(-1).to_numpy(dtype=np.int64)
    register_codes(backend, "rec_customers", ids)
    backend.execute(
        "CREATE OR REPLACE TABLE rec_lists (customer_code INTEGER, rank INTEGER, product_code INTEGER, "
        "score DOUBLE, source_code INTEGER)"
    )
    names: dict[str, int] = {}
    written = 0
    n = rc.n

    def load(customers_table: str, customers: StrArray, seg: np.ndarray, where: str = "") -> Interactions:
        return load_interactions(
            backend,
            customers=customers,
            products=products,
            customers_table=customers_table,
            products_table="rec_products",
            as_of=as_of,
            half_life_days=rc.half_life_days,
            segments=seg,
            where=where,
        )

    cands = _prior_candidates(model, segs_arr, n, filter_mask)
    if cands is not None:
        mask, grp, thr = cands
        register_codes(backend, "rec_candidate_products", products[mask])
        # the purchases of the candidate products only: exclusions can only remove those
        h_all = load(
            "rec_customers",
            ids,
            segs_arr,
            where="i.product_id IN (SELECT id FROM rec_candidate_products)",
        )
        allowed = filter_mask & mask
        for lo in range(0, len(ids), LIST_BATCH):
            hi = min(len(ids), lo + LIST_BATCH)
            h = h_all.rows(np.arange(lo, hi))
            codes, scores, sources = model.recommend_codes(
                ids[lo:hi], n, history=h, segments=segs_arr[lo:hi], allowed=allowed, with_source=True
            )
            assert sources is not None
            count = (codes >= 0).sum(axis=1)
            unsure = np.flatnonzero(
                ((count < n) | ~(scores[:, n - 1] > thr[grp[lo:hi]])) & np.isfinite(thr[grp[lo:hi]])
            )
            if len(unsure):
                # exactness check failed for these customers: their whole history, every allowed product
                sub = ids[lo:hi][unsure]
                register_codes(backend, "rec_unsure", sub)
                full = load("rec_unsure", sub, segs_arr[lo:hi][unsure])
                c2, v2, s2 = model.recommend_codes(
                    sub, n, history=full, segments=segs_arr[lo:hi][unsure], allowed=filter_mask, with_source=True
                )
                assert s2 is not None
                codes[unsure], scores[unsure] = c2, v2
                sources = sources.astype(np.result_type(sources.dtype, s2.dtype))
                sources[unsure] = s2
            written += _insert_lists(backend, lo, codes, scores, sources, names)
    else:
        for lo in range(0, len(ids), LIST_BATCH):
            hi = min(len(ids), lo + LIST_BATCH)
            h = load(
                f"(SELECT id, code - {lo} AS code FROM rec_customers WHERE code >= {lo} AND code < {hi})",
                ids[lo:hi],
                segs_arr[lo:hi],
            )
            codes, scores, sources = model.recommend_codes(
                h.customers, n, history=h, segments=h.segments, allowed=filter_mask, with_source=True
            )
            assert sources is not None
            written += _insert_lists(backend, lo, codes, scores, sources, names)
    backend.create_table(
        "rec_sources",
        pa.table(
            {
                "code": pa.array(np.array(list(names.values()), dtype=np.int32)),
                "name": pa.array(list(names), type=pa.string()),
            }
        ),
    )
    backend.execute(
        "CREATE OR REPLACE TABLE recommendations AS "
        "SELECT c.id AS customer_id, r.rank, p.id AS product_id, n.product_name, r.score, s.name AS source "
        "FROM rec_lists r JOIN rec_customers c ON c.code = r.customer_code "
        "JOIN rec_products p ON p.code = r.product_code JOIN rec_sources s ON s.code = r.source_code "
        "LEFT JOIN product_names n ON n.product_id = p.id ORDER BY r.customer_code, r.rank"
    )
    backend.execute("DROP TABLE rec_lists")
    return written


def _similar_items(
    backend: DuckDBBackend, model: Recommender, x: Any, *, n: int, threads: int, rc: RecommendConfig
) -> str:
    source = model
    if model._similarity() is None:
        source = ItemKNN(neighbours=rc.neighbours, num_threads=threads).fit(x)
    products = source.products_
    assert products is not None
    with_buyers = products[source.buyers_ > 0]
    sim_ids, sim_scores = source.similar_items(with_buyers, n)
    r, k = np.nonzero(sim_ids != "")
    frame = pa.table(
        {
            "product_id": pa.array(with_buyers[r].astype(object), type=pa.string()),
            "rank": pa.array((k + 1).astype(np.int32)),
            "similar_product_id": pa.array(sim_ids[r, k].astype(object), type=pa.string()),
            "score": pa.array(sim_scores[r, k]),
        }
    )
    backend.register("rec_similar_view", frame)
    try:
        backend.execute(
            "CREATE OR REPLACE TABLE similar_items AS "
            "WITH names AS (SELECT * FROM product_names) "
            "SELECT s.product_id, a.product_name, s.rank, s.similar_product_id, "
            "b.product_name AS similar_product_name, s.score FROM rec_similar_view s "
            "LEFT JOIN names a ON a.product_id = s.product_id "
            "LEFT JOIN names b ON b.product_id = s.similar_product_id ORDER BY s.product_id, s.rank"
        )
    finally:
        backend.con.unregister("rec_similar_view")
    return source.name


def _segment_products(backend: DuckDBBackend, n: int, excluded: StrArray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each segment's top ``n`` products by buyers and by lift (the banner products), without the products the
    business filters exclude; also as tables ``segment_products_by_lift`` and ``segment_products`` (both
    rankings, with the segment's name when ``segments`` has one: ``segment_products.parquet``)."""
    where = ""
    if len(excluded):
        register_codes(backend, "rec_excluded", excluded)
        where = "product_id NOT IN (SELECT id FROM rec_excluded)"
    names = "SELECT * FROM product_names"
    top = segment_top_products(backend, n, names=names, where=where)
    lift = segment_top_products(backend, n, rank_by="lift", names=names, where=where)
    backend.create_table("segment_products_by_lift", lift)
    both = pd.concat([top.assign(rank_by="buyers"), lift.assign(rank_by="lift")], ignore_index=True)
    both.insert(1, "rank_by", both.pop("rank_by"))
    if "segment_name" in {c for c, _ in backend.columns("segments")}:
        seg_names = backend.df("SELECT segment, any_value(segment_name) AS segment_name FROM segments GROUP BY 1")
        lookup = dict(zip(seg_names["segment"], seg_names["segment_name"], strict=True))
        both.insert(1, "segment_name", both["segment"].map(lookup))
    backend.create_table("segment_products", both)
    return top, lift


def run_recommendations(
    backend: DuckDBBackend,
    *,
    rc: RecommendConfig,
    as_of: datetime,
    seed: int,
    threads: int,
    segment_of: str | None = None,
    clean: CleanConfig | None = None,
    has_category: bool = False,
    model_dir: Path | None = None,
    bundles_ready: bool = False,
) -> RecommendOutcome:
    """The whole recommend step on a backend that holds ``transactions`` and ``segments`` (customer_id,
    segment). ``segment_of`` (customer_id, segment as of the cut-off) names the customers to evaluate on;
    without it nothing is evaluated. ``interactions_all`` must have been built (with training columns when
    evaluating) by :func:`shopseg.recommend.sql.build_interactions`; ``bundles_ready``: :func:`prepare_bundles`
    has already run (e.g. beside the segment step)."""
    timings: dict[str, float] = {}
    notes: list[str] = []
    t0 = time.perf_counter()
    backend.execute(f"CREATE OR REPLACE TABLE product_names AS {NAMES_SQL}")
    products = _sorted_ids(backend, "SELECT DISTINCT product_id FROM interactions_all")
    register_codes(backend, "rec_products", products)
    filt = item_filter(rc, clean)
    filter_mask, removed = allowed_products(backend, products, filt, as_of=as_of, has_category=has_category)
    if removed:
        notes.append(
            "products never recommended by the business filters: "
            + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in sorted(removed.items()))
        )
    timings["prepare"] = round(time.perf_counter() - t0, 3)
    ev = None
    info: dict[str, Any] = {"k": rc.n, "metric": rc.metric, "select_mode": rc.select_mode, "filtered": removed}
    if segment_of is not None:
        ev, ev_info = _evaluate(
            backend,
            rc=rc,
            as_of=as_of,
            segment_of=segment_of,
            products=products,
            filter_mask=filter_mask,
            seed=seed,
            threads=threads,
            timings=timings,
        )
        info.update(ev_info)
        info["users"] = ev.users
        info["repurchase_share"] = ev.info["repurchase_share"]
        info["tables"] = {m: t.to_dict(orient="records") for m, t in ev.tables.items()}
        info["per_segment"] = ev.per_segment.to_dict(orient="records")
        info["descriptions"] = {m: METHODS[m].description for m in rc.methods}
        long = pd.concat([t.assign(mode=m) for m, t in ev.tables.items()], ignore_index=True)
        backend.create_table("recommendation_evaluation", long)
        backend.create_table("recommendation_evaluation_segments", ev.per_segment)
    n_customers = int(backend.scalar("SELECT count(*) FROM segments"))
    method, reason = _final_method(rc, ev, n_customers, notes)
    info["method"] = method
    info["reason"] = reason
    # the chosen model, fitted on (a sample of) everyone's full history
    t0 = time.perf_counter()
    # every customer with a purchase has a segment, so the sample is drawn from `segments` (no scan of the
    # interactions)
    n_all = n_customers
    backend.execute(
        "CREATE OR REPLACE TABLE rec_fit AS SELECT customer_id FROM segments "
        f"ORDER BY hash(customer_id || '{seed}'), customer_id LIMIT {rc.fit_customers}"
    )
    if n_all > rc.fit_customers:
        notes.append(
            f"recommenders learned from a seeded sample of {rc.fit_customers:,} of the {n_all:,} customers; lists "
            "were made for everyone"
        )
    fit_ids = _sorted_ids(backend, "SELECT customer_id FROM rec_fit")
    seg = backend.df("SELECT customer_id, segment FROM segments")
    fit_seg = (
        pd.Series(seg["segment"].to_numpy(), index=seg["customer_id"].astype(str))
        .reindex(fit_ids)
        .fillna(-1)
        .to_numpy(dtype=np.int64)
    )
    register_codes(backend, "rec_fit_codes", fit_ids)
    full = load_interactions(
        backend,
        customers=fit_ids,
        products=products,
        customers_table="rec_fit_codes",
        products_table="rec_products",
        as_of=as_of,
        half_life_days=rc.half_life_days,
        segments=fit_seg,
    )
    model = make_recommender(method, rc, threads=threads, seed=seed).fit(full)
    timings["fit_final"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    info["list_rows"] = _write_lists(backend, model, rc=rc, as_of=as_of, products=products, filter_mask=filter_mask)
    timings["lists"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    info["similar_items_from"] = _similar_items(backend, model, full, n=10, threads=threads, rc=rc)
    timings["similar_items"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    if not bundles_ready:
        prepare_bundles(backend, rc=rc, seed=seed)
    backend.execute(
        "CREATE OR REPLACE TABLE bundles AS "
        "WITH names AS (SELECT * FROM product_names) "
        "SELECT b.product_a, na.product_name AS product_a_name, b.product_b, nb.product_name AS product_b_name, "
        "b.orders, b.support, b.confidence_a_b, b.confidence_b_a, b.lift FROM bundles_raw b "
        "LEFT JOIN names na ON na.product_id = b.product_a LEFT JOIN names nb ON nb.product_id = b.product_b "
        "ORDER BY b.lift DESC, b.orders DESC, b.product_a, b.product_b"
    )
    backend.execute("DROP TABLE bundles_raw")
    timings["bundles"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    segment_items(backend)
    top, lift = _segment_products(backend, rc.segment_top_n, products[~filter_mask])
    timings["segment_items"] = round(time.perf_counter() - t0, 3)
    if model_dir is not None:
        t0 = time.perf_counter()
        model.save(model_dir / "recommender")
        timings["save"] = round(time.perf_counter() - t0, 3)
    info["timings"] = timings
    return RecommendOutcome(
        method=method,
        reason=reason,
        evaluation=ev,
        info=info,
        notes=notes,
        segment_products=top,
        segment_products_lift=lift,
    )


def prepare_bundles(backend: DuckDBBackend, *, rc: RecommendConfig, seed: int) -> None:
    """``bundles_raw``: the product pairs of :func:`shopseg.recommend.cooccurrence.bundles` (SQL on the clean
    lines only, so it can run before the segments exist); the recommend step names them into ``bundles``."""
    b = bundles(
        backend,
        min_orders=rc.bundle_min_orders,
        max_order_items=rc.bundle_max_items,
        sample_orders=rc.bundle_orders,
        seed=seed,
    )
    backend.create_table("bundles_raw", b)


def prepare_interactions(
    backend: DuckDBBackend, *, as_of: datetime, holdout_days: int | None, half_life_days: float
) -> None:
    """``interactions_all`` for the run (with training columns when ``holdout_days`` is given)."""
    if holdout_days is not None and holdout_days < 1:
        raise ConfigError(f"holdout_days must be at least 1, got {holdout_days}")
    cutoff = as_of - timedelta(days=holdout_days) if holdout_days else None
    build_interactions(backend, as_of, cutoff, half_life_days=half_life_days)


def evaluate_run(
    run_dir: str | Path,
    rc: RecommendConfig,
    *,
    seed: int = 0,
    threads: int = 1,
    memory_limit: str | None = None,
) -> dict[str, Any]:
    """Re-score a finished run's time split with the recommenders of ``rc`` (e.g. other methods or metric):
    the run's database must hold the evaluation's training data (``recommend.evaluate`` was on) and the
    hold-out must be the run's. Returns the same facts as the manifest's ``recommendation_evaluation``."""
    import json

    from shopseg.errors import NotFoundError

    d = Path(run_dir)
    db = d / "shopseg.duckdb"
    manifest_path = d / "manifest.json"
    if not db.is_file() or not manifest_path.is_file():
        raise NotFoundError(f"'{d}' is not a shopseg run folder (shopseg.duckdb or manifest.json missing)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    stored = (manifest.get("config") or {}).get("recommend") or {}
    if stored.get("holdout_days", rc.holdout_days) != rc.holdout_days:
        raise ConfigError(
            f"the run held out {stored.get('holdout_days')} days, not {rc.holdout_days}; to change the hold-out run "
            "`shopseg evaluate INPUT` on the input files instead"
        )
    as_of = datetime.fromisoformat(manifest["as_of"])
    backend = DuckDBBackend(db, memory_limit=memory_limit)
    try:
        has_train = backend.has_table("interactions_all") and "n_orders_train" in {
            c for c, _ in backend.columns("interactions_all")
        }
        if not has_train or not backend.has_table("ev_segment_of"):
            raise ConfigError(
                f"the run in '{d}' was not evaluated (recommend.evaluate = false, or no customer bought on both sides "
                "of the cut-off); run `shopseg evaluate INPUT` on its input files instead"
            )
        products = _sorted_ids(backend, "SELECT DISTINCT product_id FROM interactions_all")
        register_codes(backend, "rec_products", products)
        filter_mask, removed = allowed_products(backend, products, item_filter(rc), as_of=as_of)
        timings: dict[str, float] = {}
        ev, ev_info = _evaluate(
            backend,
            rc=rc,
            as_of=as_of,
            segment_of="ev_segment_of",
            products=products,
            filter_mask=filter_mask,
            seed=seed,
            threads=threads,
            timings=timings,
        )
    finally:
        backend.close()
    best = ev.best(rc.metric, rc.select_mode)
    return {
        "k": rc.n,
        "metric": rc.metric,
        "select_mode": rc.select_mode,
        "filtered": removed,
        **ev_info,
        "users": ev.users,
        "repurchase_share": ev.info["repurchase_share"],
        "tables": {m: t.to_dict(orient="records") for m, t in ev.tables.items()},
        "per_segment": ev.per_segment.to_dict(orient="records"),
        "descriptions": {m: METHODS[m].description for m in rc.methods},
        "best": best,
        "timings": timings,
    }
