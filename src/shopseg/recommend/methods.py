"""The recommenders the pipeline knows by name, built from the run configuration."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from shopseg.errors import ConfigError
from shopseg.recommend.als import ALS, BPR
from shopseg.recommend.base import Rebuy, Recommender
from shopseg.recommend.blend import Blend
from shopseg.recommend.cooccurrence import Cooccurrence
from shopseg.recommend.history import OwnHistory
from shopseg.recommend.knn import ItemKNN
from shopseg.recommend.popularity import Popularity, Trending
from shopseg.recommend.segment import SegmentTop

if TYPE_CHECKING:
    from shopseg.config import RecommendConfig

__all__ = ["METHODS", "Method", "make_recommender", "threads_for"]


@dataclass(frozen=True)
class Method:
    description: str
    build: Callable[[RecommendConfig, int, int], Recommender]
    #: "light": a shared list or the customer's own products; "neighbour": sums over the customer's products'
    #: neighbours; "dense": scores every product for every customer (see recommend.heavy_max_customers)
    kind: str = "light"


def _rebuy(cfg: RecommendConfig) -> Rebuy | None:
    return None if cfg.rebuy == "default" else cfg.rebuy


def _spark_als(cfg: RecommendConfig, threads: int, seed: int) -> Recommender:
    """Spark MLlib's ALS (on the run's Spark session, or a local one); needs the spark extra."""
    try:
        import pyspark  # noqa: F401

        from shopseg.recommend.spark_als import SparkALS
    except ImportError as exc:
        from shopseg.backends import SPARK_INSTALL_HINT

        missing = f" ({exc.name} is not installed)" if exc.name else ""
        raise ConfigError(
            f"recommender 'spark_als': {SPARK_INSTALL_HINT}{missing}; or use 'als' (implicit, no Spark)"
        ) from None
    return SparkALS(**_als_params(cfg), num_threads=threads, random_state=seed, rebuy=_rebuy(cfg))


def _als_params(cfg: RecommendConfig) -> dict[str, Any]:
    return {
        "factors": cfg.factors,
        "iterations": cfg.iterations,
        "regularization": cfg.als_regularization,
        "alpha": cfg.als_alpha,
        "confidence": cfg.als_confidence,
    }


def _knn(cfg: RecommendConfig, threads: int, similarity: Literal["bm25", "cosine"] = "bm25") -> ItemKNN:
    return ItemKNN(similarity=similarity, neighbours=cfg.neighbours, num_threads=threads, rebuy=_rebuy(cfg))


METHODS: dict[str, Method] = {
    "popularity": Method("global top products by number of buyers", lambda c, t, s: Popularity(rebuy=_rebuy(c))),
    "trending": Method(
        "top products by buyers in the last trending_days", lambda c, t, s: Trending(c.trending_days, rebuy=_rebuy(c))
    ),
    "segment_top": Method(
        "the segment's top products by number of buyers (the classic approach)",
        lambda c, t, s: SegmentTop("buyers", rebuy=_rebuy(c)),
    ),
    "segment_lift": Method(
        "the segment's top products by lift against all customers (5+ buyers in the segment)",
        lambda c, t, s: SegmentTop("lift", rebuy=_rebuy(c)),
    ),
    "own_history": Method(
        "the customer's own most-bought products (by number of orders)", lambda c, t, s: OwnHistory(rebuy=_rebuy(c))
    ),
    "cooccurrence": Method(
        "association rules: confidence of 'bought X also bought Y' summed over the customer's products",
        lambda c, t, s: Cooccurrence(
            min_customers=c.min_pair_customers, neighbours=c.neighbours, num_threads=t, rebuy=_rebuy(c)
        ),
        "neighbour",
    ),
    "item_knn": Method(
        "products similar (BM25 item-kNN) to the customer's recent purchases", lambda c, t, s: _knn(c, t), "neighbour"
    ),
    "item_knn_cosine": Method(
        "products similar (cosine item-kNN) to the customer's recent purchases",
        lambda c, t, s: _knn(c, t, "cosine"),
        "neighbour",
    ),
    "als": Method(
        "matrix factorisation (implicit ALS; confidence from recency-weighted orders)",
        lambda c, t, s: ALS(**_als_params(c), num_threads=t, random_state=s, rebuy=_rebuy(c)),
        "dense",
    ),
    "spark_als": Method(
        "matrix factorisation (Spark MLlib implicit ALS on the run's Spark session; confidence from recency-weighted "
        "orders)",
        _spark_als,
        "dense",
    ),
    "bpr": Method(
        "matrix factorisation (implicit BPR, one thread)",
        lambda c, t, s: BPR(factors=c.factors, random_state=s, rebuy=_rebuy(c)),
        "dense",
    ),
    "blend": Method(
        "own recency-weighted history + neighbours of recent purchases + trending + segment prior",
        lambda c, t, s: Blend(trending_days=c.trending_days, knn=_knn(c, t), rebuy=_rebuy(c)),
        "neighbour",
    ),
}


def threads_for(cfg_threads: int | None, engine_threads: int | None) -> int:
    """Threads for implicit: the recommend setting, else the engine's, else every core."""
    return int(cfg_threads or engine_threads or os.cpu_count() or 1)


def make_recommender(name: str, cfg: RecommendConfig, *, threads: int, seed: int) -> Recommender:
    """A fresh (unfitted) recommender for the method ``name``."""
    if name not in METHODS:
        raise ConfigError(f"unknown recommender {name!r}; known: {sorted(METHODS)}")
    return METHODS[name].build(cfg, threads, seed)
