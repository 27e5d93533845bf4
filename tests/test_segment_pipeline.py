"""Every algorithm through the pipeline: run, CRM file with stability, manifest, saved model, ``score``; and the
``--algorithm`` flag with the report's selection and stability section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from shopseg.cli import main
from shopseg.config import load_config
from shopseg.datasets import generate_shop
from shopseg.pipeline import STEPS, run, score
from shopseg.segment import ALGORITHMS, RFM_SEGMENTS, load_segmenter

CORE = [s for s in STEPS if s.name in {"ingest", "clean", "features", "segment", "profile", "export"}]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    d = tmp_path_factory.mktemp("shop")
    generated = generate_shop(800, seed=21)
    path = d / "shop.parquet"
    generated.transactions.to_parquet(path)
    return path, generated.truth.assign(customer_id=generated.truth["customer_id"].astype(str))


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_run_then_score_with_every_algorithm(algorithm: str, shop: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    path, truth = shop
    cfg = load_config(None, {"segment.algorithm": algorithm, "segment.stability_resamples": 5})
    result = run([path], tmp_path / "run", cfg, steps=CORE)
    m = result.manifest["segmentation"]
    assert m["requested"] == algorithm
    assert (
        m["algorithm"] == algorithm if algorithm != "auto" else m["algorithm"] in {"kmeans", "ward", "gmm", "hdbscan"}
    )
    assert m["k"] == result.segments.loc[result.segments["segment"] >= 0, "segment"].nunique()
    assert m["reason"] and m["method"]
    crm = pd.read_csv(result.out / "segments.csv", dtype={"customer_id": str})
    assert list(crm.columns[:4]) == ["customer_id", "segment", "segment_name", "action"]
    # stability: one Jaccard per segment, copied to each of its customers, and the flag that goes with it
    assigned = crm[crm["segment"] >= 0]
    assert (assigned.groupby("segment")["stability"].nunique() == 1).all()
    assert (assigned["stable"] == (assigned["stability"] >= 0.6)).all()
    per_segment = {int(k): v for k, v in m["stability"]["per_segment"].items()}
    assert assigned.groupby("segment")["stability"].first().round(12).to_dict() == {
        k: round(v, 12) for k, v in per_segment.items()
    }
    saved = json.loads((result.out / "model" / "segmenter.json").read_text(encoding="utf-8"))
    assert saved["stability"]["resamples"] == 5 and saved["algorithm"] == m["algorithm"]
    if algorithm == "ward":
        assert m["ward"] == "exact" and m["ward_fitted_on"] == len(crm)
    if m["algorithm"] == "hdbscan":
        assert m["noise_share"] == pytest.approx((crm["segment"] == -1).mean())
        assert set(crm.loc[crm["segment"] == -1, "segment_name"]) <= {"unassigned"}
    if algorithm == "rfm":
        assert {"r_score", "f_score", "m_score", "rfm_score"} <= set(crm.columns)
        assert set(crm["segment_name"]) <= {s.name for s in RFM_SEGMENTS}
        assert m["features"] == ["recency_days", "frequency", "monetary"]
    if algorithm in ("kmeans", "ward", "gmm"):
        merged = truth.merge(crm[["customer_id", "segment"]], on="customer_id", suffixes=("_t", ""))
        assert adjusted_rand_score(merged["segment_t"], merged["segment"]) >= 0.9

    # the saved model alone scores the same customers again
    scored = score(
        result.out / "model",
        [path],
        tmp_path / "scored",
        load_config(None, {"features.as_of": result.manifest["as_of"]}),
    )
    both = crm[["customer_id", "segment", "segment_name"]].merge(
        scored[["customer_id", "segment", "segment_name", "stability"]], on="customer_id", suffixes=("", "_scored")
    )
    assert len(both) == len(crm)
    loaded, _ = load_segmenter(result.out / "model")
    if type(loaded).exact_predict:
        assert (both["segment"] == both["segment_scored"]).all()
        assert (both["segment_name"] == both["segment_name_scored"]).all()
    else:
        assert adjusted_rand_score(both["segment"], both["segment_scored"]) >= 0.9
    assert np.isfinite(both.loc[both["segment_scored"] >= 0, "stability"]).all()


@pytest.mark.slow
def test_cli_algorithm_flag_and_report_section(shop: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    path, _ = shop
    out = tmp_path / "ward_run"
    assert main(["run", str(path), "--algorithm", "ward", "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["segmentation"]["algorithm"] == "ward" and manifest["config"]["segment"]["algorithm"] == "ward"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Ward agglomerative clustering" in html and "Ward was computed exactly on every customer" in html
    for text in ("gap_se", "points", "calinski_harabasz", "mean adjusted Rand", "Jaccard", "Stability"):
        assert text in html, text
    assert manifest["segmentation"]["reason"] in html
    assert main(["run", str(path), "--algorithm", "dbscan", "--out", str(tmp_path / "x"), "--quiet"]) == 2
