"""Recommendations in a run: the manifest says which recommender wrote the lists and why, the lists equal
what the saved model recommends, similar items and bundles are exported, the report and the CLI show one
table per mode, and ``shopseg evaluate`` re-scores a run's hold-out with the same figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from shopseg.cli import main
from shopseg.config import RecommendConfig
from shopseg.datasets import sample_path
from shopseg.recommend import Recommender
from shopseg.recommend.evaluate import Evaluation
from shopseg.recommend.runner import _final_method, evaluate_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("recs") / "run"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["run", str(sample_path()), "--out", str(out), "--quiet"]) == 0
    return out, buf.getvalue()


def test_manifest_names_the_method_and_both_modes(run_dir: tuple[Path, str]) -> None:
    out, _ = run_dir
    m = json.loads((out / "manifest.json").read_text())
    r = m["recommendation_evaluation"]
    assert set(r["tables"]) == {"all", "new"}
    methods = [row["method"] for row in r["tables"]["all"]]
    assert methods == RecommendConfig().methods
    assert "own_history" not in [row["method"] for row in r["tables"]["new"]]
    for row in r["tables"]["all"]:
        for k in (5, 10, 20):
            for metric in ("precision", "recall", "ndcg", "map", "hit_rate", "coverage", "novelty"):
                assert 0 <= row[f"{metric}@{k}"] <= (1 if metric != "novelty" else 30)
    best = max(r["tables"]["all"], key=lambda row: row["ndcg@10"])["method"]
    assert r["method"] == best and "ndcg@10" in r["reason"]
    assert r["users"]["all"] > r["users"]["new"] > 100
    assert {row["mode"] for row in r["per_segment"]} == {"all", "new"}
    assert 0 < r["repurchase_share"] < 1


def test_lists_equal_the_saved_model(run_dir: tuple[Path, str]) -> None:
    out, _ = run_dir
    recs = pd.read_parquet(out / "recommendations.parquet")
    assert list(recs.columns) == ["customer_id", "rank", "product_id", "product_name", "score", "source"]
    crm = pd.read_parquet(out / "segments.parquet")
    assert set(recs["customer_id"]) == set(crm["customer_id"].astype(str))
    assert recs.groupby("customer_id")["rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1))).all()
    assert recs["product_name"].notna().all()
    model = Recommender.load(out / "model" / "recommender")
    m = json.loads((out / "manifest.json").read_text())
    assert model.name == m["recommendation_evaluation"]["method"].replace("segment_lift", "segment_top")
    some = sorted(recs["customer_id"].unique())[:25]
    seg = crm.set_index(crm["customer_id"].astype(str)).loc[some, "segment"].to_numpy()
    ids, scores = model.recommend(some, 10, segments=seg)
    for c, row, sc in zip(some, ids, scores, strict=True):
        mine = recs[recs["customer_id"] == c]
        assert list(mine["product_id"]) == [p for p in row if p]
        assert mine["score"].to_numpy() == pytest.approx(sc[: len(mine)])


def test_similar_items_bundles_and_report(run_dir: tuple[Path, str]) -> None:
    out, _ = run_dir
    sim = pd.read_parquet(out / "similar_items.parquet")
    assert list(sim.columns) == [
        "product_id",
        "product_name",
        "rank",
        "similar_product_id",
        "similar_product_name",
        "score",
    ]
    assert (sim["product_id"] != sim["similar_product_id"]).all()
    assert sim.groupby("product_id")["rank"].max().max() == 10
    bundles = pd.read_parquet(out / "bundles.parquet")
    assert {"product_a", "product_b", "orders", "support", "confidence_a_b", "confidence_b_a", "lift"} <= set(bundles)
    assert (bundles["product_a"] < bundles["product_b"]).all() and (bundles["orders"] >= 10).all()
    assert bundles["lift"].is_monotonic_decreasing
    # the per-segment banner products: both rankings for every segment, named as in the CRM file
    banners = pd.read_parquet(out / "segment_products.parquet")
    crm = pd.read_parquet(out / "segments.parquet")
    names = dict(zip(crm["segment"], crm["segment_name"], strict=False))
    assert set(banners["segment"]) == set(crm["segment"]) and set(banners["rank_by"]) == {"buyers", "lift"}
    assert (banners["segment_name"] == banners["segment"].map(names)).all()
    assert banners.groupby(["segment", "rank_by"])["rank"].apply(lambda r: list(r) == list(range(1, len(r) + 1))).all()
    html = (out / "report.html").read_text(encoding="utf-8")
    for text in (
        "All items:",
        "New items:",
        "per-segment metrics",
        "Top products per segment",
        "Top products per segment by lift",
        "Bundles",
        "ndcg@10",
    ):
        assert text in html, text


def test_cli_summary_and_evaluate_command(run_dir: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    out, printed = run_dir
    assert "Recommendations, all items" in printed and "Recommendations, new items" in printed
    assert "recommendations.parquet: " in printed
    assert main(["evaluate", str(out)]) == 0
    stored = capsys.readouterr().out
    assert "Recommendations, all items" in stored and "blend" in stored
    # re-scoring the run's own split gives the run's figures
    assert main(["evaluate", str(out), "--methods", "popularity,item_knn", "--metric", "recall@10"]) == 0
    again = capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())
    knn = next(r for r in m["recommendation_evaluation"]["tables"]["all"] if r["method"] == "item_knn")
    assert f"{knn['recall@10']:.4f}" in again and "segment_top" not in again
    # the tables show the k of the selecting metric
    assert main(["evaluate", str(out), "--methods", "popularity", "--metric", "recall@20"]) == 0
    at20 = capsys.readouterr().out
    pop = next(r for r in m["recommendation_evaluation"]["tables"]["all"] if r["method"] == "popularity")
    assert "(top-20)" in at20 and f"{pop['recall@20']:.4f}" in at20
    assert main(["evaluate", str(out), "--holdout-days", "10"]) == 2
    assert "held out 30 days" in capsys.readouterr().err


def test_evaluated_customers_stay_in_a_small_fit_sample(run_dir: tuple[Path, str]) -> None:
    out, _ = run_dir
    m = json.loads((out / "manifest.json").read_text())["recommendation_evaluation"]
    info = evaluate_run(out, RecommendConfig(fit_customers=100, methods=["popularity"]))
    # fewer customers to learn from than customers to evaluate: every evaluated one is still in the sample
    assert info["users"] == m["users"] and info["fit_customers"] >= m["users"]["all"]


def test_a_configured_method_writes_the_lists(run_dir: tuple[Path, str], tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[recommend]\nmethod = "popularity"\nevaluate = false\nexclude_products = ["22423"]\n')
    out = tmp_path / "pop"
    assert main(["run", str(sample_path()), "--out", str(out), "--config", str(cfg), "--quiet"]) == 0
    recs = pd.read_parquet(out / "recommendations.parquet")
    assert set(recs["source"]) == {"popularity"} and "22423" not in set(recs["product_id"])
    m = json.loads((out / "manifest.json").read_text())["recommendation_evaluation"]
    assert m["method"] == "popularity" and "recommend.method" in m["reason"] and "tables" not in m
    assert m["filtered"] == {"non_product": 1}
    shutil.rmtree(out)


def test_evaluate_an_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ev"
    args = ["evaluate", str(sample_path()), "--out", str(out), "--methods", "popularity,own_history", "-q"]
    assert main([*args, "--metric", "recall@10"]) == 0
    printed = capsys.readouterr().out
    m = json.loads((out / "manifest.json").read_text())["recommendation_evaluation"]
    assert [r["method"] for r in m["tables"]["all"]] == ["popularity", "own_history"]
    assert m["method"] == "own_history" and "recall@10" in m["reason"] and "own_history" in printed
    assert main(["evaluate", str(sample_path()), "--methods", "nope", "--out", str(out), "-q"]) == 2
    assert "unknown recommender" in capsys.readouterr().err


def test_heavy_models_fall_back_on_large_shops() -> None:
    cfg = RecommendConfig(methods=["popularity", "own_history", "als", "blend"], heavy_max_customers=100)
    table = pd.DataFrame({"method": ["popularity", "own_history", "als", "blend"], "ndcg@10": [0.1, 0.15, 0.3, 0.2]})
    ev = Evaluation(tables={"all": table}, per_segment=pd.DataFrame(), users={"all": 10})
    notes: list[str] = []
    assert _final_method(cfg, ev, 50, notes)[0] == "als" and not notes
    method, reason = _final_method(cfg, ev, 5000, notes)
    assert method == "own_history" and "als" in reason and "heavy_max_customers" in notes[0]
    forced = RecommendConfig(method="blend", heavy_max_customers=100)
    assert _final_method(forced, None, 5000, [])[0] == "popularity"


def test_segment_items_and_followup_counts_agree_with_every_pair(run_dir: tuple[Path, str], tmp_path: Path) -> None:
    """``segment_items`` counts pairs and buyers in one pass (grouping sets), with ``buyers_train``; the insights'
    follow-up read from it gives the same figures as the query over every pair and as the one over the lines."""
    from datetime import datetime

    from shopseg.backends import DuckDBBackend
    from shopseg.insights import _rec_followup

    out, _ = run_dir
    db = tmp_path / "copy.duckdb"
    shutil.copy(out / "shopseg.duckdb", db)
    b = DuckDBBackend(db)
    try:
        items = b.df("SELECT * FROM segment_items ORDER BY segment, product_id")
        direct = b.df(
            "SELECT s.segment, i.product_id, count(*) AS buyers, count(*) FILTER (WHERE i.n_orders_train > 0) AS bt "
            "FROM interactions_all i JOIN segments s USING (customer_id) GROUP BY ALL ORDER BY 1, 2"
        )
        assert items["buyers"].tolist() == direct["buyers"].tolist()
        assert items["buyers_train"].tolist() == direct["bt"].tolist()
        seg_buyers = b.df(
            "SELECT segment, count(*) AS n FROM segments "
            "WHERE customer_id IN (SELECT customer_id FROM interactions_all) GROUP BY 1 ORDER BY 1"
        )
        first = items.drop_duplicates("segment").set_index("segment")
        share = first["buyers"] / first["buyer_share"]
        assert share.round(6).tolist() == seg_buyers["n"].astype(float).tolist()
        manifest = json.loads((out / "manifest.json").read_text())
        as_of = datetime.fromisoformat(manifest["as_of"])
        counted = _rec_followup(b, as_of, 30, 10, interactions=True)
        lines = _rec_followup(b, as_of, 30, 10, interactions=False)
        b.execute("ALTER TABLE segment_items DROP COLUMN buyers_train")
        pairs = _rec_followup(b, as_of, 30, 10, interactions=True)
    finally:
        b.close()
    assert counted is not None and counted["buyers_after_cutoff"] > 0 and counted["bought_segment_product"] > 0
    assert counted == pairs == lines
