"""One contract for every Segmenter: planted structure found (up to label permutation), deterministic under a
seed, labels numbered by size, save/load round trip with identical labels, unseen customers predicted from the
saved model alone, and mismatched features refused with a message naming them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from shopseg.errors import ShopsegError
from shopseg.segment import ALGORITHMS, Segmenter, load_segmenter, make_segmenter

# small and quick: the contract is about behaviour, the planted-shop test about quality
FAST: dict[str, Any] = {"stability_resamples": 5, "gap_references": 3, "seed": 3}


@dataclass
class Case:
    frame: pd.DataFrame
    truth: np.ndarray
    features: list[str] | None
    params: dict[str, Any]
    strata: np.ndarray  # groups a held-out sample is stratified by


def _blobs() -> tuple[pd.DataFrame, np.ndarray]:
    """Three well separated groups of 150, 100 and 60 customers in three features."""
    rng = np.random.default_rng(7)
    centres = np.array([[0.0, 0.0, 0.0], [8.0, 8.0, 0.0], [0.0, 8.0, 8.0]])
    sizes = (150, 100, 60)
    x = np.vstack([c + rng.normal(scale=0.6, size=(n, 3)) for c, n in zip(centres, sizes, strict=True)])
    truth = np.repeat(np.arange(3), sizes)
    order = rng.permutation(len(x))
    frame = pd.DataFrame(x[order], columns=["a", "b", "c"])
    frame.insert(0, "customer_id", [f"c{i:04d}" for i in range(len(frame))])
    return frame, truth[order]


def _rfm_truth(r: int, f: int) -> str:
    """The R/F grid written out by hand (independently of shopseg.segment.rfm)."""
    if r == 5 and f >= 4:
        return "Champions"
    if r in (3, 4) and f >= 4:
        return "Loyal"
    if r >= 4 and f in (2, 3):
        return "Potential loyalist"
    if r == 5 and f == 1:
        return "New"
    if r == 4 and f == 1:
        return "Promising"
    if r == 3 and f == 3:
        return "Need attention"
    if r == 3 and f <= 2:
        return "About to sleep"
    if r <= 2 and f in (3, 4):
        return "At risk"
    if r <= 2 and f == 5:
        return "Can't lose them"
    if r == 1 and f == 1:
        return "Lost"
    return "Hibernating"


def _rfm_shop() -> tuple[pd.DataFrame, np.ndarray]:
    """12 customers in each of the 25 (recency level, frequency level) cells: the quintiles are the levels."""
    rng = np.random.default_rng(11)
    recency_levels = [3, 20, 60, 150, 300]  # R score 5 .. 1
    freq_levels = [1, 2, 4, 8, 20]  # F score 1 .. 5
    rows, truth = [], []
    for i, rec in enumerate(recency_levels):
        for j, fr in enumerate(freq_levels):
            for _ in range(12):
                rows.append((rec, fr, fr * rng.uniform(20, 60)))
                truth.append(_rfm_truth(5 - i, j + 1))
    order = rng.permutation(len(rows))
    frame = pd.DataFrame([rows[i] for i in order], columns=["recency_days", "frequency", "monetary"])
    frame.insert(0, "customer_id", [f"r{i:04d}" for i in range(len(frame))])
    names = sorted(set(truth))
    return frame, np.array([names.index(truth[i]) for i in order])


def _case(algorithm: str) -> Case:
    if algorithm == "rfm":
        frame, truth = _rfm_shop()
        cells = frame["recency_days"].astype(str) + "/" + frame["frequency"].astype(str)
        return Case(frame, truth, None, dict(FAST), cells.to_numpy())
    frame, truth = _blobs()
    params = dict(FAST)
    if algorithm == "auto":  # the Gaussian mixture is the slow candidate; its own contract covers it
        params["candidates"] = ["kmeans", "ward", "hdbscan"]
    return Case(frame, truth, ["a", "b", "c"], params, truth)


def _make(algorithm: str, case: Case) -> Segmenter:
    return make_segmenter(algorithm, case.features, **case.params)


@pytest.fixture(scope="module", params=ALGORITHMS)
def fitted(request: pytest.FixtureRequest) -> tuple[str, Case, Segmenter]:
    algorithm = str(request.param)
    case = _case(algorithm)
    return algorithm, case, _make(algorithm, case).fit(case.frame)


def test_every_algorithm_is_registered() -> None:
    assert set(ALGORITHMS) == {"kmeans", "minibatch", "ward", "gmm", "hdbscan", "rfm", "auto"}


def test_recovers_planted_segments_up_to_label_permutation(fitted: tuple[str, Case, Segmenter]) -> None:
    _, case, seg = fitted
    assert adjusted_rand_score(case.truth, seg.labels_) >= 0.95
    assert seg.k_ == len(np.unique(case.truth))
    assert len(seg.labels_) == len(case.frame)


def test_labels_are_numbered_by_size(fitted: tuple[str, Case, Segmenter]) -> None:
    _, _, seg = fitted
    sizes = np.bincount(seg.labels_[seg.labels_ >= 0])
    assert list(sizes) == sorted(sizes, reverse=True)
    assert set(np.unique(seg.labels_[seg.labels_ >= 0])) == set(range(seg.k_))


def test_deterministic_under_a_seed(fitted: tuple[str, Case, Segmenter]) -> None:
    algorithm, case, seg = fitted
    again = _make(algorithm, case).fit(case.frame)
    assert np.array_equal(again.labels_, seg.labels_)
    assert again.to_dict() == seg.to_dict()


def test_row_order_does_not_change_the_segmentation(fitted: tuple[str, Case, Segmenter]) -> None:
    algorithm, case, seg = fitted
    perm = np.random.default_rng(5).permutation(len(case.frame))
    shuffled = _make(algorithm, case).fit(case.frame.iloc[perm].reset_index(drop=True))
    back = np.empty_like(shuffled.labels_)
    back[perm] = shuffled.labels_
    assert adjusted_rand_score(seg.labels_, back) == pytest.approx(1.0)


def test_save_load_round_trip_gives_identical_labels(fitted: tuple[str, Case, Segmenter], tmp_path: Path) -> None:
    algorithm, case, seg = fitted
    seg.save(tmp_path / "model", extra={"note": "kept"})
    assert not list((tmp_path / "model").glob("*.pkl")) and not list((tmp_path / "model").glob("*.tmp*"))
    loaded, meta = load_segmenter(tmp_path / "model")
    assert type(loaded).algorithm == seg.algorithm_ == meta["algorithm"]
    assert meta["note"] == "kept"
    predicted = seg.predict(case.frame)
    assert np.array_equal(loaded.predict(case.frame), predicted)
    if type(loaded).exact_predict:
        assert np.array_equal(predicted, seg.labels_)
    else:  # Ward and HDBSCAN assign new customers by a rule that may differ at the edges
        assert adjusted_rand_score(seg.labels_, predicted) >= 0.95
    expected = {k: v for k, v in seg.to_dict().items() if k != "auto"}
    assert loaded.to_dict() == expected
    if algorithm == "auto":
        assert meta["auto"]["reason"].startswith("auto chose")


@pytest.mark.slow
def test_predicts_unseen_customers_from_the_saved_model_alone(tmp_path: Path) -> None:
    for algorithm in ALGORITHMS:
        case = _case(algorithm)
        # every fifth customer of each planted group (RFM: cell) is held out, so the quintiles stay as planted
        rank = pd.Series(case.strata).groupby(case.strata).cumcount().to_numpy()
        test = rank % 5 == 0
        train = case.frame[~test].reset_index(drop=True)
        _make(algorithm, case).fit(train).save(tmp_path / algorithm)
        loaded, _ = load_segmenter(tmp_path / algorithm)
        labels = loaded.predict(case.frame[test].drop(columns="customer_id"))
        assigned = labels >= 0
        assert assigned.mean() >= 0.9, algorithm
        assert adjusted_rand_score(case.truth[test][assigned], labels[assigned]) >= 0.95, algorithm


def test_refuses_data_without_the_model_features(fitted: tuple[str, Case, Segmenter], tmp_path: Path) -> None:
    _, case, seg = fitted
    feature = seg.preprocessor_.input_features_[1]
    wrong = case.frame.rename(columns={feature: "something_else"})
    with pytest.raises(ShopsegError, match=rf"\['{feature}'\].*something_else"):
        seg.predict(wrong)
    seg.save(tmp_path / "m")
    loaded, _ = load_segmenter(tmp_path / "m")
    with pytest.raises(ShopsegError, match=feature):
        loaded.predict(case.frame.drop(columns=feature))
    with pytest.raises(ShopsegError, match="not numeric"):
        loaded.predict(case.frame.assign(**{feature: "x"}))


def test_unfitted_model_refuses_to_predict() -> None:
    for algorithm in ALGORITHMS:
        case = _case(algorithm)
        with pytest.raises(ShopsegError, match="not fitted"):
            _make(algorithm, case).predict(case.frame)
