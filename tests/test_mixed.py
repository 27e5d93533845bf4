"""Mixed numeric/categorical data: weighted one-hot blocks, their exact distances through the segmenter's
scaling, and the warning when one attribute alone decides the segments."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from shopseg.segment import Preprocessor, make_segmenter
from shopseg.segment.mixed import (
    MISSING,
    OTHER,
    CategoricalEncoder,
    attribute_dominance,
    cramers_v,
    dominance_warning,
)


def _frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "city": rng.choice(["Cairo", "Giza", "Luxor", "Aswan"], n, p=[0.5, 0.3, 0.19, 0.01]),
            # a rare missing value makes three levels, two of them almost perfectly (anti-)correlated
            "gender": rng.choice(np.array(["Male", "Female", None], dtype=object), n, p=[0.5, 0.49, 0.01]),
        }
    )


def test_block_counts_like_one_standardised_feature() -> None:
    f = _frame()
    for weight in (1.0, 2.5):
        m = CategoricalEncoder(["city", "gender"], weight=weight).fit(f).matrix(f)
        # mean squared distance over all pairs = 2 x the block's total (population) variance = 2 w^2
        assert m[:, :4].var(axis=0).sum() == pytest.approx(weight**2, rel=1e-12)
        assert m[:, 4:].var(axis=0).sum() == pytest.approx(weight**2, rel=1e-12)


def test_hand_computed_two_value_block() -> None:
    f = pd.DataFrame({"g": ["a", "a", "a", "b"]})
    e = CategoricalEncoder(["g"]).fit(f)
    # p = (3/4, 1/4): 1 - sum p^2 = 6/16, w = 1 / sqrt(6/16)
    assert e.block_weight_["g"] == pytest.approx(1 / np.sqrt(6 / 16))
    assert e.output_columns == ["g~1"]
    z = e.transform(f)["g~1"].to_numpy()
    # the two values lie sqrt(2) w apart, and the column is centred
    assert abs(z[3] - z[0]) == pytest.approx(np.sqrt(2) / np.sqrt(6 / 16))
    assert z.mean() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("scaling", ["standard", "robust", "none"])
def test_segmenter_scaling_keeps_the_block_distances(scaling: str) -> None:
    f = _frame()
    e = CategoricalEncoder(["city", "gender"]).fit(f)
    enc = e.transform(f)
    aug = pd.concat([f, enc], axis=1)
    # the near-duplicate filter is on, as in the default segmenter: no encoded column may be dropped
    p = Preprocessor(["x", *enc.columns], scaling=scaling, weights=e.weights(scaling), drop_correlated=0.95).fit(aug)
    assert p.features == ["x", *enc.columns]
    z = p.transform(aug)[:, 1:]
    m = e.matrix(f)
    rng = np.random.default_rng(1)
    i, j = rng.integers(0, len(f), 5000), rng.integers(0, len(f), 5000)
    dz = ((z[i] - z[j]) ** 2).sum(axis=1)
    dm = ((m[i] - m[j]) ** 2).sum(axis=1)
    np.testing.assert_allclose(dz, dm, atol=1e-9)


def test_encoded_columns_are_uncorrelated_within_a_block() -> None:
    f = _frame()
    enc = CategoricalEncoder(["city", "gender"]).fit(f).transform(f)
    r = enc[["city~1", "city~2", "city~3"]].corr().to_numpy()
    np.testing.assert_allclose(r, np.eye(3), atol=1e-9)


def test_levels_other_missing_and_unseen_values() -> None:
    f = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2 + [None]})
    e = CategoricalEncoder(["c"], max_levels=3).fit(f)
    # the two most frequent values, then the rest (c, d and missing) as other
    assert e.levels_["c"] == ["a", "b", OTHER]
    assert e.shares_["c"] == pytest.approx([5 / 15, 4 / 15, 6 / 15])
    new = pd.DataFrame({"c": ["d", "zzz", None, "a"]})
    t = e.transform(new).to_numpy()
    # unseen and missing values are 'other' here
    np.testing.assert_allclose(t[0], t[1])
    np.testing.assert_allclose(t[0], t[2])
    assert not np.allclose(t[0], t[3])
    e2 = CategoricalEncoder(["c"]).fit(f)
    assert MISSING in e2.levels_["c"]


def test_round_trip_through_json() -> None:
    f = _frame(500)
    e = CategoricalEncoder(["city", "gender"], weight=1.5).fit(f)
    e2 = CategoricalEncoder.from_dict(json.loads(json.dumps(e.to_dict())))
    pd.testing.assert_frame_equal(e.transform(f), e2.transform(f))
    assert e2.weights() == e.weights()


def test_cramers_v_hand_computed() -> None:
    a = np.array([0] * 30 + [1] * 30)
    b = np.array(["x"] * 20 + ["y"] * 10 + ["x"] * 10 + ["y"] * 20)
    # expected 15 per cell; chi2 = 4 * 25 / 15 = 20/3; V = sqrt(chi2 / 60) = 1/3
    assert cramers_v(a, b) == pytest.approx(1 / 3)
    assert cramers_v(a, np.where(a == 0, "x", "y")) == pytest.approx(1.0)
    assert cramers_v(a, np.array(["x"] * 60)) == 0.0


def test_warning_fires_when_segments_are_gender() -> None:
    rng = np.random.default_rng(3)
    n = 400
    gender = rng.choice(["Male", "Female"], n)
    frame = pd.DataFrame({"gender": gender, "city": rng.choice(["Cairo", "Giza"], n)})
    labels = np.where(gender == "Male", 0, 1)
    dom = attribute_dominance(frame, labels, ["gender", "city"])
    by = {d.attribute: d for d in dom}
    assert by["gender"].decides and by["gender"].cramers_v == pytest.approx(1.0)
    assert by["gender"].purity == 1.0 and set(by["gender"].dominant.values()) == {"Male", "Female"}
    assert not by["city"].decides
    text = dominance_warning(dom)
    assert text is not None and "gender" in text and "city" not in text.split("decides the segments:")[1]
    # four segments that split each gender in two: still decided by gender
    labels4 = labels * 2 + (rng.random(n) < 0.5)
    assert {d.attribute: d for d in attribute_dominance(frame, labels4, ["gender"])}["gender"].decides


def test_purity_rule_without_a_high_v() -> None:
    # every segment at least 95 % one value, and the segments do not share it: decides even with V < 0.9
    labels = np.repeat(np.arange(4), 100)
    values = np.array((["a"] * 95 + ["b"] * 5) * 3 + ["b"] * 95 + ["a"] * 5)
    d = attribute_dominance(pd.DataFrame({"v": values}), labels, ["v"])[0]
    assert d.cramers_v == pytest.approx(0.8728, abs=1e-4) and d.purity == pytest.approx(0.95) and d.decides
    # ... but not when every segment is mostly the same value (a near-constant attribute)
    labels = labels[:200]
    same = np.array(["a"] * 96 + ["b"] * 4 + ["a"] * 97 + ["b"] * 3)
    assert not attribute_dominance(pd.DataFrame({"v": same}), labels, ["v"])[0].decides


def test_behaviour_segments_recovered_and_no_warning_with_random_attributes() -> None:
    rng = np.random.default_rng(11)
    n = 600
    truth = rng.integers(0, 3, n)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    xy = centres[truth] + rng.normal(scale=0.7, size=(n, 2))
    frame = pd.DataFrame(
        {
            "a": xy[:, 0],
            "b": xy[:, 1],
            "gender": rng.choice(["Male", "Female"], n),
            "city": rng.choice(["Cairo", "Giza", "Luxor"], n),
        }
    )
    e = CategoricalEncoder(["gender", "city"]).fit(frame)
    enc = e.transform(frame)
    aug = pd.concat([frame, enc], axis=1)
    seg = make_segmenter(
        "kmeans", ["a", "b", *enc.columns], k=3, weights=e.weights(), stability_resamples=0, gap_references=0
    ).fit(aug)
    assert adjusted_rand_score(truth, seg.labels_) >= 0.9
    assert dominance_warning(attribute_dominance(frame, seg.labels_, ["gender", "city"])) is None
    # a heavy categorical weight makes gender decide two segments, and the check says so
    e10 = CategoricalEncoder(["gender"], weight=10.0).fit(frame)
    enc10 = e10.transform(frame)
    seg10 = make_segmenter(
        "kmeans",
        ["a", "b", *enc10.columns],
        k=2,
        weights=e10.weights(),
        stability_resamples=0,
        gap_references=0,
    ).fit(pd.concat([frame, enc10], axis=1))
    assert dominance_warning(attribute_dominance(frame, seg10.labels_, ["gender", "city"])) is not None
