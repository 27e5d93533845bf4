"""Segmentation: k selection on planted structure, determinism, persistence, recovery of a generated shop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from shopseg.errors import NotFittedError
from shopseg.segment import KMeansSegmenter, Preprocessor, choose_k, knee


def _blobs(k: int, n_per: int, seed: int = 0, spread: float = 0.3) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-8, 8, size=(k, 3))
    x = np.vstack([c + rng.normal(scale=spread, size=(n_per, 3)) for c in centers])
    truth = np.repeat(np.arange(k), n_per)
    return pd.DataFrame(x, columns=["a", "b", "c"]), truth


def test_knee_of_a_hand_made_curve() -> None:
    # steep drop to k=4, then flat: the knee is 4
    assert knee([1, 2, 3, 4, 5, 6, 7, 8], [100, 70, 40, 10, 9, 8, 7, 6]) == 4
    assert knee([2, 3], [5, 4]) == 2


def test_choose_k_borda_and_forced_warning() -> None:
    table = pd.DataFrame(
        {
            "k": [2, 3, 4, 5],
            "inertia": [100.0, 50.0, 20.0, 18.0],
            "silhouette": [0.40, 0.50, 0.70, 0.45],
            "calinski_harabasz": [100.0, 150.0, 300.0, 200.0],
            "davies_bouldin": [1.2, 0.9, 0.5, 0.8],
        }
    )
    sel = choose_k(table)
    assert sel.chosen == 4
    assert "k=4" in sel.reason and "silhouette" in sel.reason
    forced = choose_k(table, forced=2)
    assert forced.chosen == 2 and forced.forced
    assert forced.warning is not None and "k=4" in forced.warning
    assert choose_k(table, forced=4).warning is None


@pytest.mark.parametrize("k", [3, 5])
def test_kmeans_finds_planted_k_and_labels(k: int) -> None:
    frame, truth = _blobs(k, 120, seed=k)
    seg = KMeansSegmenter(["a", "b", "c"], k_min=2, k_max=8, seed=1).fit(frame)
    assert seg.k_ == k
    assert adjusted_rand_score(truth, seg.labels_) == pytest.approx(1.0)


def test_labels_ordered_by_size_and_deterministic() -> None:
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(0, 0.2, (300, 2)), rng.normal(5, 0.2, (100, 2)), rng.normal(-5, 0.2, (200, 2))])
    frame = pd.DataFrame(x, columns=["a", "b"])
    a = KMeansSegmenter(["a", "b"], k=3, seed=7).fit(frame)
    b = KMeansSegmenter(["a", "b"], k=3, seed=7).fit(frame)
    assert np.array_equal(a.labels_, b.labels_)
    assert list(np.bincount(a.labels_)) == [300, 200, 100]


def test_save_load_round_trip_gives_identical_labels(tmp_path: Path) -> None:
    frame, _ = _blobs(4, 80, seed=11)
    seg = KMeansSegmenter(["a", "b", "c"], seed=0).fit(frame)
    seg.save(tmp_path / "model")
    assert not list((tmp_path / "model").glob("*.pkl"))
    loaded, meta = KMeansSegmenter.load(tmp_path / "model")
    assert np.array_equal(loaded.predict(frame), seg.labels_)
    assert meta["k"] == seg.k_
    assert loaded.selection_.reason == seg.selection_.reason


def test_predict_refuses_data_without_the_model_features(tmp_path: Path) -> None:
    frame, _ = _blobs(2, 50)
    seg = KMeansSegmenter(["a", "b", "c"], k=2).fit(frame)
    with pytest.raises(NotFittedError, match=r"\['c'\]"):
        seg.predict(frame[["a", "b"]])
    with pytest.raises(NotFittedError):
        KMeansSegmenter(["a"]).predict(frame)
    with pytest.raises(NotFittedError, match=r"segmenter\.json"):
        KMeansSegmenter.load(tmp_path)


def test_preprocessor_logs_skewed_and_drops_constant() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"spend": rng.lognormal(3, 1.5, 1000), "score": rng.normal(0, 1, 1000), "const": np.ones(1000)}
    )
    p = Preprocessor(["spend", "score", "const"]).fit(frame)
    assert p.features == ["spend", "score"]
    assert p.log_ == [True, False]
    assert p.dropped_ == {"const": "constant"}
    z = p.transform(frame)
    assert np.allclose(z.mean(axis=0), 0, atol=1e-9) and np.allclose(z.std(axis=0), 1)
    again = Preprocessor.from_dict(p.to_dict())
    assert np.array_equal(again.transform(frame), z)


def test_forced_k_that_every_index_rejects_is_warned() -> None:
    frame, _ = _blobs(3, 100, seed=2)
    seg = KMeansSegmenter(["a", "b", "c"], k=7, seed=0).fit(frame)
    assert seg.k_ == 7
    assert seg.selection_.warning is not None and "k=3" in seg.selection_.warning
