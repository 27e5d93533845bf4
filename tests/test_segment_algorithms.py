"""The segmentation algorithms, k selection, stability and preprocessing, each against hand-computed or planted
answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import adjusted_rand_score

from shopseg.config import SegmentConfig, load_config
from shopseg.errors import ConfigError, NotFittedError, SchemaError
from shopseg.segment import (
    KMeansSegmenter,
    Preprocessor,
    Segmenter,
    WardSegmenter,
    choose_k,
    gap_statistic,
    load_segmenter,
    make_segmenter,
    segmenter_from_config,
    ward_tree,
)
from shopseg.segment.base import compute_limits
from shopseg.segment.rfm import RFM_SEGMENTS, scores
from shopseg.segment.select import gap_choice
from shopseg.segment.stability import adjusted_rand, best_jaccard

QUICK = {"stability_resamples": 0, "gap_references": 0}


def _blobs(sizes: tuple[int, ...], seed: int = 0, spread: float = 0.4, dim: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(len(sizes), dim))
    x = np.vstack([c + rng.normal(scale=spread, size=(n, dim)) for c, n in zip(centres, sizes, strict=True)])
    cols = [f"f{i}" for i in range(dim)]
    return pd.DataFrame(x, columns=cols), np.repeat(np.arange(len(sizes)), sizes)


# ------------------------------------------------------------------------------------------------ Ward
@pytest.mark.parametrize("method", ["nn-chain", "scipy"])
def test_ward_tree_matches_scipy_heights_and_cuts(method: str) -> None:
    rng = np.random.default_rng(4)
    x = np.vstack([rng.normal(c, 1.0, (70, 3)) for c in (0, 4, 9)])
    tree = ward_tree(x, method=method)
    z = linkage(x, method="ward")
    np.testing.assert_allclose(np.sort(tree.merges[:, 2]), np.sort(z[:, 2]), rtol=1e-9)
    cuts = tree.cut(list(range(2, 9)))
    for k, labels in cuts.items():
        assert len(np.unique(labels)) == k
        assert adjusted_rand_score(fcluster(z, k, "maxclust"), labels) == pytest.approx(1.0)


def test_ward_tree_with_duplicates_merges_them_first() -> None:
    rng = np.random.default_rng(5)
    base = np.vstack([rng.normal(c, 0.5, (20, 2)) for c in (0, 6)])
    x = np.vstack([base, base[:15], base[:5]])  # 20 duplicated rows
    tree = ward_tree(x, method="nn-chain")
    assert tree.n_leaves == 40 and len(tree.merges) == 39
    z = linkage(x, method="ward")
    # scipy merges the duplicates at height 0; the remaining heights agree
    np.testing.assert_allclose(np.sort(tree.merges[:, 2]), np.sort(z[:, 2])[20:], rtol=1e-9, atol=1e-12)
    for k in (2, 3, 5):
        assert adjusted_rand_score(fcluster(z, k, "maxclust"), tree.cut([k])[k]) == pytest.approx(1.0)


def test_ward_exact_up_to_the_limit_then_sampled() -> None:
    frame, truth = _blobs((120, 90, 60), seed=1)
    feats = list(frame.columns)
    exact = WardSegmenter(feats, seed=0, **QUICK).fit(frame)
    assert exact.fit_info_["ward"] == "exact" and exact.fit_info_["fitted_on"] == 270
    sampled = WardSegmenter(feats, seed=0, exact_limit=100, **QUICK).fit(frame)
    assert sampled.fit_info_["ward"] == "sampled" and sampled.fit_info_["fitted_on"] == 100
    assert "seeded sample of 100 of 270" in sampled.fit_info_["method"]
    for seg in (exact, sampled):
        assert seg.k_ == 3
        assert adjusted_rand_score(truth, seg.labels_) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------ RFM
def _rfm_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(10)],
            "recency_days": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            "frequency": [5, 3, 2, 2, 1, 1, 1, 1, 1, 1],
            "monetary": [100, 90, 80, 70, 60, 50, 40, 30, 20, 10],
        }
    )


def test_rfm_scores_ties_and_named_segments_by_hand() -> None:
    frame = _rfm_frame()
    seg = make_segmenter("rfm", None, **QUICK).fit(frame)
    # quintile boundaries (linear interpolation), boundaries in the lower bin:
    # recency 1..10 -> 2.8, 4.6, 6.4, 8.2 -> R = 5 5 4 4 3 3 2 2 1 1
    # frequency sorted 1 1 1 1 1 1 2 2 3 5 -> 1, 1, 1.4, 2.2: every one-order customer has F = 1 (a tie spans
    # three quintiles, so F = 2 and 3 go unused), 2 orders -> F = 4, 3 and 5 orders -> F = 5
    assert seg.fit_info_["quintile_boundaries"]["recency_days"] == pytest.approx([2.8, 4.6, 6.4, 8.2])
    assert seg.fit_info_["quintile_boundaries"]["frequency"] == pytest.approx([1.0, 1.0, 1.4, 2.2])
    cols = seg.customer_columns(frame)
    assert cols is not None
    assert cols["r_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert cols["f_score"].tolist() == [5, 5, 4, 4, 1, 1, 1, 1, 1, 1]
    assert cols["m_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert cols["rfm_score"].tolist()[:3] == ["555", "555", "444"]
    names = [seg.segment_names_[int(x)] for x in seg.labels_]
    assert names == ["Champions"] * 2 + ["Loyal"] * 2 + ["About to sleep"] * 2 + ["Hibernating"] * 2 + ["Lost"] * 2
    assert seg.k_ == 5 and len(seg.segment_names_) == len(RFM_SEGMENTS) == 11


def test_rfm_does_not_depend_on_row_order_and_scores_new_customers_with_saved_boundaries(tmp_path: Path) -> None:
    frame = _rfm_frame()
    seg = make_segmenter("rfm", None, **QUICK).fit(frame)
    shuffled = frame.sample(frac=1.0, random_state=3)
    other = make_segmenter("rfm", None, **QUICK).fit(shuffled)
    a = seg.customer_columns(frame)
    b = other.customer_columns(shuffled)
    assert a is not None and b is not None
    pd.testing.assert_frame_equal(a, b.loc[a.index])
    seg.save(tmp_path / "m")
    loaded, _ = load_segmenter(tmp_path / "m")
    new = pd.DataFrame({"recency_days": [2.8, 2.9], "frequency": [9, 1], "monetary": [5, 5]})
    got = loaded.customer_columns(new)
    assert got is not None
    assert got["r_score"].tolist() == [5, 4]  # 2.8 is the boundary itself: lower bin, the more recent score
    assert [loaded.segment_names_[int(x)] for x in loaded.predict(new)] == ["Champions", "Promising"]


def test_rfm_scores_function_boundaries() -> None:
    edges = np.array([[10.0, 20, 30, 40], [1, 1, 2, 5], [100, 200, 300, 400]])
    s = scores(np.array([[10.0, 1, 99], [10.5, 2, 401], [41, 6, 300]]), edges)
    assert s.tolist() == [[5, 1, 1], [4, 3, 5], [1, 5, 3]]


def test_rfm_refuses_other_features() -> None:
    with pytest.raises(ConfigError, match="recency"):
        make_segmenter("rfm", ["a", "b"])


# ------------------------------------------------------------------------------------------------ HDBSCAN, GMM
def test_hdbscan_labels_noise_unassigned_and_records_its_share() -> None:
    frame, truth = _blobs((150, 120), seed=2, spread=0.5, dim=2)
    rng = np.random.default_rng(9)
    noise = pd.DataFrame(rng.uniform(-30, 30, size=(30, 2)), columns=frame.columns)
    data = pd.concat([frame, noise], ignore_index=True)
    seg = make_segmenter("hdbscan", list(frame.columns), min_cluster_size=20, **QUICK).fit(data)
    assert seg.k_ == 2
    assert seg.segment_names_[-1] == "unassigned"
    assert 0.05 <= seg.noise_share_ <= 0.15 and seg.noise_share_ == pytest.approx((seg.labels_ == -1).mean())
    assert adjusted_rand_score(truth, seg.labels_[:270]) >= 0.98
    assert (seg.labels_[270:] == -1).mean() >= 0.8  # the scattered customers are unassigned
    assert "unassigned" in seg.selection_.reason and f"{seg.noise_share_:.1%}" in seg.selection_.reason


def test_gmm_puts_the_bic_in_the_vote_and_models_unequal_spreads() -> None:
    rng = np.random.default_rng(1)
    # a tight group beside a wide one: K-Means' straight boundary cuts the wide group's tail into the tight one
    x = np.vstack(
        [rng.normal([0, 0], 0.3, (300, 2)), rng.normal([3.5, 0], 1.5, (300, 2)), rng.normal([0, 6], 0.3, (200, 2))]
    )
    truth = np.repeat(np.arange(3), [300, 300, 200])
    frame = pd.DataFrame(x, columns=["a", "b"])
    opts = {"drop_correlated": None, **QUICK}
    gmm = make_segmenter("gmm", ["a", "b"], **opts).fit(frame)
    assert "bic" in gmm.selection_.table.columns
    assert gmm.selection_.bic_k == 3 and gmm.k_ == 3 and "BIC favours k=3" in gmm.selection_.reason
    km = make_segmenter("kmeans", ["a", "b"], k=3, **opts).fit(frame)
    assert adjusted_rand_score(truth, gmm.labels_) >= 0.95 > adjusted_rand_score(truth, km.labels_) + 0.1


# ------------------------------------------------------------------------------------------------ selection
def test_gap_choice_by_hand() -> None:
    t = pd.DataFrame({"k": [2, 3, 4, 5], "gap": [0.5, 0.9, 0.95, 0.97], "gap_se": [0.1, 0.1, 0.1, 0.1]})
    assert gap_choice(t) == 3  # Gap(2)=0.5 < 0.9-0.1; Gap(3)=0.9 >= 0.95-0.1
    flat = pd.DataFrame({"k": [2, 3], "gap": [0.1, 0.5], "gap_se": [0.0, 0.0]})
    assert gap_choice(flat) == 3  # no k qualifies: the largest gap


def test_gap_statistic_finds_planted_k() -> None:
    frame, _ = _blobs((100, 100, 100, 100), seed=6, spread=0.3, dim=2)
    from sklearn.cluster import KMeans

    def cluster(x: np.ndarray, ks: list[int], seed: int) -> dict[int, np.ndarray]:
        return {k: KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x).labels_ for k in ks}

    with compute_limits():
        table = gap_statistic(frame.to_numpy(), list(range(2, 8)), cluster, references=10, seed=0)
    assert list(table.columns) == ["k", "gap", "gap_se"] and (table["gap_se"] > 0).all()
    assert gap_choice(table) == 4


def test_choose_k_counts_every_index_present() -> None:
    table = pd.DataFrame(
        {
            "k": [2, 3, 4],
            "inertia": [100.0, 40.0, 35.0],
            "silhouette": [0.5, 0.7, 0.4],
            "calinski_harabasz": [10.0, 30.0, 20.0],
            "davies_bouldin": [0.9, 0.5, 0.8],
            "gap": [0.2, 0.8, 0.85],
            "gap_se": [0.1, 0.1, 0.1],
            "bic": [500.0, 300.0, 450.0],
        }
    )
    sel = choose_k(table)
    # 6 indices x 2 points: k=3 wins every index (elbow 3, gap 3, bic 3 ...)
    assert sel.chosen == 3 and int(sel.table.set_index("k").loc[3, "points"]) == 12
    assert sel.gap_k == 3 and sel.bic_k == 3
    assert "6 indices" in sel.reason and "gap statistic favours k=3" in sel.reason and "BIC favours k=3" in sel.reason
    forced = choose_k(table, forced=2)
    assert forced.warning is not None and "no index supports it" in forced.warning


# ------------------------------------------------------------------------------------------------ stability
def test_adjusted_rand_and_jaccard_by_hand() -> None:
    a = np.array([0, 0, 1, 1, 2, 2])
    b = np.array([5, 5, 3, 3, 9, 9])
    assert adjusted_rand(a, b) == pytest.approx(1.0)
    c = np.array([0, 0, 0, 1, 1, 1])
    assert adjusted_rand(a, c) == pytest.approx(adjusted_rand_score(a, c))
    # segment 0 of a = {0,1}: best match {0,1,2}, 2/3; segment 1 = {2,3}: 1 of 4 with either; segment 2: 2/3
    np.testing.assert_allclose(best_jaccard(a, c, [0, 1, 2]), [2 / 3, 1 / 4, 2 / 3])
    # noise (-1) in the other labelling is never a match
    np.testing.assert_allclose(best_jaccard(a, np.array([-1, -1, 1, 1, 1, 1]), [0, 1]), [0.0, 0.5])


@pytest.mark.parametrize("algorithm", ["kmeans", "ward", "gmm"])
def test_stability_on_threads_is_the_same_as_in_one(algorithm: str) -> None:
    """The bootstrap refits run on threads in a fit; drawn first, they give the same tables as one by one."""
    from shopseg.segment import segmenter_from_config
    from shopseg.segment.stability import bootstrap_stability

    frame, _ = _blobs((120, 80, 60), seed=3)
    cols = list(frame.columns)
    seg = segmenter_from_config(SegmentConfig(algorithm=algorithm, features=cols, k=3, gap_references=0), cols)
    seg.fit(frame)
    x = seg.transform(frame)
    kw = {"resamples": 6, "sample": 200, "threshold": 0.6, "seed": 5}
    with compute_limits():
        one = bootstrap_stability(seg, x, seg.labels_, [2, 3, 4], workers=1, **kw)
        many = bootstrap_stability(seg, x, seg.labels_, [2, 3, 4], workers=3, **kw)
    pd.testing.assert_frame_equal(many.table, one.table)
    pd.testing.assert_frame_equal(many.segments, one.segments)
    assert one.table["ari_mean"].notna().all()


def test_stability_flags_arbitrary_splits_and_keeps_real_segments() -> None:
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 0.3, (200, 2)), rng.normal([5, -4], 0.3, (150, 2))])
    frame = pd.DataFrame(x, columns=["a", "b"])
    real = KMeansSegmenter(["a", "b"], seed=1, gap_references=0, drop_correlated=None).fit(frame)
    assert real.stability_ is not None and real.k_ == 2
    assert real.stability_.segments["jaccard"].min() > 0.95 and not real.stability_.unstable()
    assert real.stability_.ari_at(2) == pytest.approx(1.0) and real.stability_.ari_at(2) > real.stability_.ari_at(4)
    assert len(real.stability_.table) == 9 and real.stability_.resamples == 20
    # one round cloud cut into six: the cuts are arbitrary and move from one bootstrap sample to the next
    blob = pd.DataFrame(np.random.default_rng(1).normal(size=(400, 3)), columns=["a", "b", "c"])
    split = KMeansSegmenter(["a", "b", "c"], k=6, seed=1, gap_references=0, drop_correlated=None).fit(blob)
    assert split.stability_ is not None and len(split.stability_.unstable()) >= 4
    assert "unstable" in split.stability_.summary()
    bad = split.stability_.segments
    assert (bad["stable"] == (bad["jaccard"] >= 0.6)).all()


# ------------------------------------------------------------------------------------------------ preprocessing
def test_preprocessing_options_by_hand() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "spend": rng.lognormal(3, 1.2, 2000),
            "x": rng.normal(10, 2, 2000),
            "x_copy": 0,
            "signed": rng.standard_t(3, 2000) * 5,
        }
    )
    frame["x_copy"] = frame["x"] * 3 + rng.normal(0, 0.01, 2000)
    p = Preprocessor(list(frame.columns), drop_correlated=0.95).fit(frame)
    assert p.features == ["spend", "x", "signed"]
    assert p.dropped_["x_copy"].startswith("near-duplicate of x (|r| = 1.000")
    robust = Preprocessor(["x"], scaling="robust").fit(frame)
    q1, med, q3 = np.percentile(frame["x"], [25, 50, 75])
    assert robust.center_ == pytest.approx([med]) and robust.scale_ == pytest.approx([q3 - q1])
    yj = Preprocessor(["spend", "signed"], skew="yeo-johnson", scaling="none").fit(frame)
    assert yj.lambdas_[0] is not None and yj.lambdas_[0] < 0.5  # lognormal: strongly compressed
    z = yj.transform(frame)
    assert abs(pd.Series(z[:, 0]).skew()) < 0.2
    qt = Preprocessor(["spend"], scaling="quantile").fit(frame)
    zq = qt.transform(frame)[:, 0]
    assert abs(np.median(zq)) < 0.01 and zq.std() == pytest.approx(1.0, abs=0.05)
    assert (np.argsort(zq, kind="stable") == np.argsort(frame["spend"].to_numpy(), kind="stable")).all()
    w = Preprocessor(["x", "signed"], weights={"signed": 2.0}).fit(frame)
    plain = Preprocessor(["x", "signed"]).fit(frame)
    np.testing.assert_allclose(w.transform(frame)[:, 1], 2 * plain.transform(frame)[:, 1])
    pca = Preprocessor(["spend", "x", "signed"], pca=2).fit(frame)
    zp = pca.transform(frame)
    assert zp.shape == (2000, 2) and pca.output_names == ["pc1", "pc2"] and len(pca.pca_explained_) == 2
    assert abs(np.corrcoef(zp, rowvar=False)[0, 1]) < 1e-8
    share = Preprocessor(["spend", "x", "signed"], pca=0.99).fit(frame)
    assert share.pca_components_ is not None and len(share.pca_components_) == 3
    for pre in (p, robust, yj, qt, w, pca):
        again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())), pre.arrays())
        np.testing.assert_array_equal(again.transform(frame), pre.transform(frame))
    with pytest.raises(NotFittedError, match="arrays"):
        Preprocessor.from_dict(qt.to_dict(), {})


def test_preprocessing_refuses_bad_options_and_data() -> None:
    frame = pd.DataFrame({"a": [1.0, 2, 3], "b": [3.0, 1, 2], "t": ["x", "y", "z"]})
    with pytest.raises(ConfigError, match="not segmentation features"):
        Preprocessor(["a"], weights={"zz": 2.0}).fit(frame)
    with pytest.raises(ConfigError, match="scaling"):
        Preprocessor(["a"], scaling="minmax").fit(frame)
    with pytest.raises(ConfigError, match="pca"):
        Preprocessor(["a", "b"], pca=1.5).fit(frame)
    with pytest.raises(SchemaError, match="not numeric"):
        Preprocessor(["a", "t"]).fit(frame)


# ------------------------------------------------------------------------------------------------ factory, config
def test_factory_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'kmeans'"):
        make_segmenter("kmean", ["a"])
    with pytest.raises(ConfigError, match=r"does not take \['exact_limit'\]"):
        make_segmenter("kmeans", ["a"], exact_limit=5)
    frame, _ = _blobs((40, 40), dim=2)
    with pytest.raises(ConfigError, match=r"k_min \(5\) is above k_max \(3\)"):
        make_segmenter("kmeans", list(frame.columns), k_min=5, k_max=3).fit(frame)
    with pytest.raises(ConfigError, match="stability_threshold must be a number in"):
        make_segmenter("kmeans", list(frame.columns), stability_threshold=1.5).fit(frame)
    ward = make_segmenter("ward", list(frame.columns), **QUICK).fit(frame)
    ward.save(tmp_path / "w")
    with pytest.raises(NotFittedError, match="is a ward model, not kmeans"):
        KMeansSegmenter.load(tmp_path / "w")
    seg, _ = Segmenter.load(tmp_path / "w")
    assert isinstance(seg, WardSegmenter)


def test_foundation_model_format_1_still_loads(tmp_path: Path) -> None:
    d = tmp_path / "v1"
    d.mkdir()
    centres = np.array([[1.0, 0.0], [-1.0, 0.0]])
    np.save(d / "centers.npy", centres)
    meta = {
        "format_version": 1,
        "algorithm": "kmeans",
        "params": {
            "features": ["a", "b"],
            "k": None,
            "k_min": 2,
            "k_max": 10,
            "n_init": 10,
            "seed": 0,
            "silhouette_sample": 5000,
            "selection_sample": 20000,
        },
        "k": 2,
        "inertia": 3.5,
        "preprocessing": {
            "features": ["a", "b"],
            "fill": [0.0, 0.0],
            "log1p": [False, False],
            "center": [0.0, 0.0],
            "scale": [1.0, 1.0],
            "dropped": {},
        },
        "selection": {"table": [], "chosen": 2, "knee": 2, "reason": "old", "forced": False, "warning": None},
    }
    (d / "segmenter.json").write_text(json.dumps(meta), encoding="utf-8")
    seg, _ = load_segmenter(d)
    assert isinstance(seg, KMeansSegmenter) and seg.inertia_ == 3.5
    assert seg.predict(pd.DataFrame({"a": [2.0, -3.0], "b": [0.0, 1.0]})).tolist() == [0, 1]


def test_config_builds_each_segmenter_with_its_own_settings() -> None:
    cfg = load_config(
        None,
        {
            "segment.algorithm": "gmm",
            "segment.gmm_n_init": 2,
            "segment.n_init": 7,
            "segment.gmm_covariance": "diag",
            "segment.weights": {"a": 2.0},
        },
    ).segment
    seg = segmenter_from_config(cfg, ["a", "b"], weights={"b": 0.5})
    assert seg.algorithm == "gmm"
    assert seg.get_params()["n_init"] == 2 and seg.get_params()["covariance_type"] == "diag"
    assert seg.weights == {"a": 2.0, "b": 0.5}
    ward = segmenter_from_config(SegmentConfig(algorithm="ward", ward_exact_limit=500), ["a"])
    assert isinstance(ward, WardSegmenter) and ward.exact_limit == 500
    rfm = segmenter_from_config(SegmentConfig(algorithm="rfm"), ["a"])
    assert rfm.features == ["recency_days", "frequency", "monetary"]
    with pytest.raises(ConfigError, match=r"segment\.algorithm"):
        load_config(None, {"segment.algorithm": "dbscan"})
    for name, field in SegmentConfig.model_fields.items():
        assert field.description, name


def test_auto_picks_a_stable_candidate_and_says_why(tmp_path: Path) -> None:
    frame, truth = _blobs((150, 100, 80), seed=12, spread=0.5, dim=2)
    auto = make_segmenter("auto", list(frame.columns), stability_resamples=5, gap_references=0, seed=1).fit(frame)
    table = auto.comparison_
    assert table["algorithm"].tolist() == ["kmeans", "ward", "gmm", "hdbscan"]
    assert table["chosen"].sum() == 1
    chosen = table[table["chosen"]].iloc[0]
    assert bool(chosen["eligible"])
    assert chosen["silhouette"] >= table.loc[table["eligible"], "silhouette"].max() - 0.005
    assert auto.reason_.startswith(f"auto chose {chosen['algorithm']}: the best silhouette among the candidates")
    assert auto.algorithm_ == chosen["algorithm"] and auto.k_ == 3
    assert adjusted_rand_score(truth, auto.labels_) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="auto candidates"):
        make_segmenter("auto", ["f0"], candidates=["rfm"]).fit(frame)


def test_compute_limits_sets_one_thread_and_restores() -> None:
    # the kept controller must still limit every pool (OpenMP of scikit-learn, BLAS of numpy) and restore them
    from threadpoolctl import threadpool_info, threadpool_limits

    def pools() -> dict[tuple[str, str], int]:
        return {(p["internal_api"], p["filepath"]): p["num_threads"] for p in threadpool_info()}

    with threadpool_limits(limits=3):  # a known starting point on any machine
        before = pools()
        assert any(api == "openmp" for api, _ in before) and set(before.values()) == {3}
        for _ in range(2):  # the second time from the kept controller
            with compute_limits():
                inside = pools()
            assert set(inside) == set(before) and set(inside.values()) == {1}
            assert pools() == before


def test_silhouettes_equal_scikit_learn_for_every_labelling() -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    from shopseg.segment.select import silhouettes

    x, _ = _blobs((40, 25, 3, 1), seed=5)
    xa = x.to_numpy()
    rng = np.random.default_rng(1)
    labelings = [KMeans(n_clusters=k, n_init=1, random_state=0).fit(xa).labels_ for k in (2, 3, 4)]
    noisy = labelings[2].copy()
    noisy[rng.choice(len(xa), 10, replace=False)] = -1  # noise is left out, as points and as segments
    got = silhouettes(xa, [*labelings, noisy, np.zeros(len(xa), dtype=int)], block=7)  # blocks not dividing n
    for labels, value in zip(labelings, got[:3], strict=True):
        assert value == pytest.approx(silhouette_score(xa, labels), abs=1e-12)
    keep = noisy >= 0
    assert got[3] == pytest.approx(silhouette_score(xa[keep], noisy[keep]), abs=1e-12)
    assert np.isnan(got[4])  # one segment: not defined
