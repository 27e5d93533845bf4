"""Spark MLlib segmenters (K-Means, bisecting K-Means, Gaussian mixture) and Spark ALS behind shopseg's
interfaces: planted structure found, models saved as JSON + .npy that load and predict without Spark, and
K-Means from given centres converging to scikit-learn's partition."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

import spark_support
from shopseg.segment import load_segmenter

pytestmark = [pytest.mark.spark, pytest.mark.slow]

FAST: dict[str, Any] = {"stability_resamples": 3, "gap_references": 0, "seed": 3, "skew": "none"}


@pytest.fixture(scope="module")
def spark() -> Any:
    return spark_support.session()


def _blobs(seed: int = 7, scale: float = 0.6) -> tuple[pd.DataFrame, np.ndarray]:
    """Three groups of 150, 100 and 60 customers in three features."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [8.0, 8.0, 0.0], [0.0, 8.0, 8.0]])
    sizes = (150, 100, 60)
    x = np.vstack([c + rng.normal(scale=scale, size=(n, 3)) for c, n in zip(centres, sizes, strict=True)])
    truth = np.repeat(np.arange(3), sizes)
    order = rng.permutation(len(x))
    frame = pd.DataFrame(x[order], columns=["a", "b", "c"])
    frame.insert(0, "customer_id", [f"c{i:04d}" for i in range(len(frame))])
    return frame, truth[order]


@pytest.mark.parametrize(
    ("algorithm", "saved_as"),
    [("spark_kmeans", "kmeans"), ("spark_bisecting", "kmeans"), ("spark_gmm", "gmm")],
)
def test_mllib_segmenter_finds_planted_groups_and_saves_a_spark_free_model(
    spark: Any, tmp_path: Path, algorithm: str, saved_as: str
) -> None:
    from shopseg.segment.spark_mllib import (
        SparkBisectingKMeansSegmenter,
        SparkGMMSegmenter,
        SparkKMeansSegmenter,
    )

    classes = {c.algorithm: c for c in (SparkKMeansSegmenter, SparkBisectingKMeansSegmenter, SparkGMMSegmenter)}
    frame, truth = _blobs()
    seg = classes[algorithm](["a", "b", "c"], **FAST).fit(frame)
    assert seg.k_ == 3
    assert adjusted_rand_score(truth, seg.labels_) == 1.0
    # numbered by size: the 150-customer group is segment 0
    assert np.bincount(seg.labels_).tolist() == [150, 100, 60]
    assert seg.fit_info_["engine"] == "spark" and "Spark MLlib" in seg.fit_info_["method"]
    seg.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "segmenter.json").read_text())
    assert meta["algorithm"] == saved_as and meta["fit"]["engine"] == "spark"
    back, _ = load_segmenter(tmp_path / "model")
    assert back.algorithm == saved_as
    np.testing.assert_array_equal(back.predict(frame), seg.labels_)
    unseen, unseen_truth = _blobs(seed=8)
    assert adjusted_rand_score(unseen_truth, back.predict(unseen)) == 1.0


def test_kmeans_from_given_centres_converges_to_scikit_learns_partition(spark: Any) -> None:
    from shopseg.segment.spark_mllib import SparkKMeansSegmenter

    # overlapping groups, so that where Lloyd's iterations end depends on where they start
    frame, _ = _blobs(seed=11, scale=2.5)
    seg = SparkKMeansSegmenter(["a", "b", "c"], k=3, **FAST).fit(frame)
    x = seg.transform(frame)
    start = x[[0, 1, 2]]
    spark_km = SparkKMeansSegmenter(
        ["a", "b", "c"], k=3, init_centers=start.tolist(), tol=1e-12, max_iter=300, **FAST
    ).fit(frame)
    ref = KMeans(n_clusters=3, init=start, n_init=1, tol=0.0, max_iter=300).fit(x)
    assert adjusted_rand_score(ref.labels_, spark_km.labels_) == 1.0
    np.testing.assert_allclose(
        np.sort(spark_km.centers_, axis=0), np.sort(ref.cluster_centers_, axis=0), rtol=1e-9, atol=1e-9
    )


def test_spark_segmenters_refuse_what_mllib_cannot_do(spark: Any) -> None:
    from shopseg.errors import ConfigError
    from shopseg.segment.spark_mllib import SparkGMMSegmenter, SparkKMeansSegmenter

    frame, _ = _blobs()
    with pytest.raises(ConfigError, match="full covariances only"):
        SparkGMMSegmenter(["a", "b", "c"], k=3, covariance_type="diag", **FAST).fit(frame)
    with pytest.raises(ConfigError, match="init_centers"):
        SparkKMeansSegmenter(["a", "b", "c"], k=3, init_centers=[[0.0, 0.0, 0.0]], **FAST).fit(frame)


def _checkerboard() -> Any:
    """40 customers in two groups, each buying (70 % of) its own ten products: the implicit-feedback analogue
    of a checkerboard."""
    from shopseg.recommend.base import Interactions

    rng = np.random.default_rng(0)
    rows = []
    for c in range(40):
        group = c % 2
        for p in range(10):
            if rng.random() < 0.7:
                rows.append((f"c{c:02d}", f"p{group}{p}", f"o{c}-{p}", datetime(2011, 1, 1) + timedelta(days=p), 1.0))
    lines = pd.DataFrame(rows, columns=["customer_id", "product_id", "order_id", "ts", "quantity"])
    return Interactions.from_lines(lines), lines


def test_spark_als_recommends_within_the_customers_group_and_loads_without_spark(spark: Any, tmp_path: Path) -> None:
    from shopseg.recommend.base import Interactions, Recommender
    from shopseg.recommend.spark_als import SparkALS

    x, lines = _checkerboard()
    # two factors for two planted groups (more factors fit noise in 40 customers, in implicit's ALS as well)
    model = SparkALS(factors=2, iterations=15, regularization=0.05, blocks=2, rebuy="never").fit(x)
    customers = [f"c{c:02d}" for c in range(40)]
    ids, scores = model.recommend(customers, 3)
    for c, recs in zip(customers, ids, strict=True):
        group = int(c[1:]) % 2
        bought = set(lines.loc[lines["customer_id"] == c, "product_id"])
        real = [r for r in recs if r]
        left = 10 - len({p for p in bought if p.startswith(f"p{group}")})  # own-group products not yet bought
        # the group's products come first; other groups' products only once those run out
        assert all(r.startswith(f"p{group}") for r in real[: min(3, left)]), (c, recs, left)
        assert not (set(real) & bought)  # rebuy="never"
    assert np.all(np.diff(np.nan_to_num(scores, nan=-np.inf), axis=1) <= 0)
    model.save(tmp_path / "als")
    # a new customer who bought two group-1 products is folded in from the saved factors alone
    new = pd.DataFrame(
        [("new", "p10", "n1", datetime(2011, 1, 3), 1.0), ("new", "p11", "n2", datetime(2011, 1, 4), 1.0)],
        columns=lines.columns,
    )
    history = Interactions.from_lines(new, as_of=x.as_of)
    back = Recommender.load(tmp_path / "als")
    assert type(back) is SparkALS
    np.testing.assert_array_equal(back.recommend(customers, 3)[0], ids)
    fresh, _ = back.recommend(["new"], 3, history=history)
    assert all(p.startswith("p1") for p in fresh[0])
    # and the saved model needs no Spark at all: load and score in a process where pyspark cannot be imported
    script = (
        "import sys; sys.modules['pyspark'] = None\n"
        "from shopseg.recommend.base import Recommender\n"
        "import shopseg.recommend.spark_als\n"
        f"m = Recommender.load({str(tmp_path / 'als')!r})\n"
        "print(','.join(m.recommend(['c00'], 3)[0][0]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ",".join(ids[0])
