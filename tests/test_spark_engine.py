"""The Spark engine as users meet it: ``--engine spark`` on the command line and ``[engine]`` in the config; a
clear message when PySpark is missing; a whole run on Spark giving the same run folder as DuckDB."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import spark_support
from shopseg.backends import SPARK_INSTALL_HINT, DuckDBBackend, open_engine
from shopseg.cli import main
from shopseg.config import EngineConfig, RunConfig, load_config
from shopseg.datasets import sample_path
from shopseg.errors import BackendError, ConfigError
from shopseg.pipeline import run


@pytest.fixture
def without_pyspark(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import pyspark`` fail as it does where the extra is not installed."""
    for name in [m for m in sys.modules if m == "pyspark" or m.startswith("pyspark.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.delitem(sys.modules, "shopseg.backends.spark", raising=False)


def test_the_spark_engine_without_pyspark_says_how_to_install_it(without_pyspark: None, tmp_path: Path) -> None:
    with pytest.raises(BackendError) as err:
        open_engine(EngineConfig(name="spark"), tmp_path)
    assert SPARK_INSTALL_HINT in str(err.value)
    assert "pip install 'shopseg[spark]'" in str(err.value)


def test_the_cli_reports_the_missing_extra_with_exit_code_2(
    without_pyspark: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(sample_path()), "--out", str(tmp_path / "run"), "--engine", "spark", "-q"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Spark backend needs: pip install 'shopseg[spark]'" in " ".join(err.split())


def test_the_spark_als_recommender_without_pyspark_says_how_to_install_it(without_pyspark: None) -> None:
    from shopseg.config import RecommendConfig
    from shopseg.recommend.methods import make_recommender

    monkey = sys.modules.pop("shopseg.recommend.spark_als", None)
    try:
        with pytest.raises(ConfigError, match=r"spark_als.*pip install 'shopseg\[spark\]'.*'als'"):
            make_recommender("spark_als", RecommendConfig(), threads=1, seed=0)
    finally:
        if monkey is not None:
            sys.modules["shopseg.recommend.spark_als"] = monkey


@pytest.mark.spark
@pytest.mark.slow
def test_spark_als_is_a_method_of_a_run_on_spark(tmp_path: Path) -> None:
    """``spark_als`` in a run on the Spark engine: evaluated on the time split beside the others, and with
    ``method = "spark_als"`` its lists are the run's recommendations."""
    spark_support.session()
    cfg: dict[str, Any] = {
        "engine.name": "spark",
        "segment.stability_resamples": 2,
        "segment.gap_references": 0,
        "recommend.methods": ["popularity", "spark_als"],
        "recommend.method": "spark_als",
        "recommend.factors": 8,
        "recommend.iterations": 3,
    }
    result = run([sample_path()], tmp_path / "spark", load_config(None, cfg))
    ev = result.manifest["recommendation_evaluation"]
    assert ev["method"] == "spark_als"
    for mode in ("all", "new"):
        assert [r["method"] for r in ev["tables"][mode]] == ["popularity", "spark_als"]
        assert all(0.0 <= r["recall@10"] <= 1.0 for r in ev["tables"][mode])
    recs = pd.read_parquet(tmp_path / "spark" / "recommendations.parquet")
    assert recs["customer_id"].nunique() == len(result.segments)
    assert set(recs["source"]) <= {"spark_als", "popularity", "segment", "cold start"} and len(recs) > 0
    saved = json.loads((tmp_path / "spark" / "model" / "recommender" / "recommender.json").read_text())
    assert saved["class"] == "spark_als" and saved["params"]["factors"] == 8


def test_engine_settings_are_validated_and_default_to_duckdb(tmp_path: Path) -> None:
    assert RunConfig().engine.name == "duckdb"
    cfg = load_config(None, {"engine.name": "spark", "engine.spark_master": "spark://host:7077"})
    assert (cfg.engine.name, cfg.engine.spark_master) == ("spark", "spark://host:7077")
    with pytest.raises(ConfigError, match=r"engine\.name"):
        load_config(None, {"engine.name": "sparc"})
    with pytest.raises(ConfigError, match="spark_shuffle_partitions"):
        load_config(None, {"engine.spark_shuffle_partitions": 0})
    database = DuckDBBackend(tmp_path / "run.duckdb")
    try:
        assert open_engine(EngineConfig(), tmp_path, database) is database
    finally:
        database.close()


@pytest.mark.spark
@pytest.mark.slow
def test_a_whole_run_on_spark_writes_the_same_run_folder_as_duckdb(tmp_path: Path) -> None:
    spark_support.session()  # the run joins the test session instead of starting (and stopping) its own
    cfg: dict[str, Any] = {"segment.stability_resamples": 2, "segment.gap_references": 0}
    duck = run([sample_path()], tmp_path / "duckdb", load_config(None, cfg))
    spark = run([sample_path()], tmp_path / "spark", load_config(None, {**cfg, "engine.name": "spark"}))
    assert spark.manifest["rows"] == duck.manifest["rows"]
    assert spark.manifest["config"]["engine"]["name"] == "spark"
    pd.testing.assert_frame_equal(spark.segments, duck.segments)
    for name in ("quarantine.parquet", "recommendations.parquet", "segments.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "spark" / name), pd.read_parquet(tmp_path / "duckdb" / name), obj=name
        )
    # the engine's tables are kept as Parquet beside the run's database, which reads them
    assert (tmp_path / "spark" / "spark-tables" / "transactions_flagged").is_dir()
    assert (tmp_path / "spark" / "report.html").stat().st_size > 10_000
    saved = json.loads((tmp_path / "spark" / "model" / "segmenter.json").read_text())
    assert saved["algorithm"] == "kmeans"
    # the session was the test run's: still usable
    assert spark_support.session().range(3).count() == 3
    # Spark SQL's catalogue folder is not left in the directory the command was started from
    warehouse = spark_support.session().conf.get("spark.sql.warehouse.dir") or ""
    assert not warehouse.removeprefix("file:").startswith(str(Path.cwd()))


@pytest.mark.spark
@pytest.mark.slow
def test_a_whole_run_with_orders_events_and_customers_on_spark_matches_duckdb(tmp_path: Path) -> None:
    from shopseg.datasets_events import generate_events

    spark_support.session()
    g = generate_events(150, seed=3)
    files = {name: tmp_path / f"{name}.parquet" for name in ("orders", "events", "customers")}
    g.orders.to_parquet(files["orders"], index=False)
    g.events.to_parquet(files["events"], index=False)
    g.customers.to_parquet(files["customers"], index=False)
    cfg: dict[str, Any] = {"segment.stability_resamples": 2, "segment.gap_references": 0}
    kw: dict[str, Any] = {"events": [files["events"]], "customers": [files["customers"]]}
    duck = run([files["orders"]], tmp_path / "duckdb", load_config(None, cfg), **kw)
    spark = run([files["orders"]], tmp_path / "spark", load_config(None, {**cfg, "engine.name": "spark"}), **kw)
    assert spark.manifest["rows"] == duck.manifest["rows"]
    assert spark.manifest["events"]["rows"] == duck.manifest["events"]["rows"]
    pd.testing.assert_frame_equal(spark.segments, duck.segments)
    for name in ("segments.parquet", "recommendations.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "spark" / name), pd.read_parquet(tmp_path / "duckdb" / name), obj=name
        )
    assert (tmp_path / "spark" / "spark-tables" / "events_flagged").is_dir()  # the events were cleaned on Spark
