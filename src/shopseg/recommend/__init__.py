"""Recommendations: one interface, many recommenders, an honest time-split evaluation.

* :mod:`~shopseg.recommend.base` — :class:`Interactions` (what recommenders learn from) and the
  :class:`Recommender` interface (``fit``, ``recommend``, ``similar_items``, ``save``/``load``);
* recommenders: :class:`Popularity`, :class:`Trending`, :class:`SegmentTop`, :class:`OwnHistory`,
  :class:`Cooccurrence` (association rules), :class:`ItemKNN` (cosine/BM25), :class:`ALS`, :class:`BPR`
  (``implicit``), :class:`Blend` (the default);
* :func:`evaluate` / :func:`time_split` — precision, recall, NDCG, MAP, hit rate, coverage and novelty at
  k = 5, 10, 20, on all items and on new items, per segment;
* :func:`bundles` (pairs bought together), :class:`ItemFilter` (business filters);
* :func:`run_recommendations` — the pipeline's recommend step on a backend.

Example::

    from shopseg.recommend import Blend, time_split, evaluate
    train, truth = time_split(lines, holdout_days=30)
    model = Blend().fit(train)
    ids, scores = model.recommend(["12347", "12348"], n=10)
    print(evaluate({"blend": model}, train, truth).tables["all"])
"""

from __future__ import annotations

from shopseg.recommend.als import ALS, BPR
from shopseg.recommend.base import REGISTRY, Interactions, Recommender
from shopseg.recommend.blend import Blend
from shopseg.recommend.cooccurrence import Cooccurrence, bundles
from shopseg.recommend.evaluate import KS, METRICS, MODES, Evaluation, evaluate, parse_metric, time_split
from shopseg.recommend.filters import ItemFilter, allowed_products
from shopseg.recommend.history import OwnHistory
from shopseg.recommend.knn import ItemKNN
from shopseg.recommend.methods import METHODS, make_recommender
from shopseg.recommend.popularity import Popularity, Trending
from shopseg.recommend.runner import RecommendOutcome, prepare_interactions, run_recommendations
from shopseg.recommend.segment import SegmentTop
from shopseg.recommend.sql import build_interactions, segment_top_products

__all__ = [
    "ALS",
    "BPR",
    "KS",
    "METHODS",
    "METRICS",
    "MODES",
    "REGISTRY",
    "Blend",
    "Cooccurrence",
    "Evaluation",
    "Interactions",
    "ItemFilter",
    "ItemKNN",
    "OwnHistory",
    "Popularity",
    "RecommendOutcome",
    "Recommender",
    "SegmentTop",
    "Trending",
    "allowed_products",
    "build_interactions",
    "bundles",
    "evaluate",
    "make_recommender",
    "parse_metric",
    "prepare_interactions",
    "run_recommendations",
    "segment_top_products",
    "time_split",
]
