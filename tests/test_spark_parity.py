"""Differential test: the same inputs through DuckDB and through Spark (local mode) must give the same run.

Compared: the reconciliation (rows per cleaning rule, exactly), the quarantined rows (row id and reason), the
matched returns, and every feature of every customer (integers exactly, other numbers within 1e-9 relative,
timestamps exactly). Inputs: the bundled real sample (cp1252 CSV, US dates, float ids) and generated shops
as typed Parquet, as text CSV, as both at once, and the benchmark generator's quirky lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

import spark_support
from shopseg.backends import DuckDBBackend
from shopseg.backends.base import Backend
from shopseg.clean import CleanResult, clean_transactions
from shopseg.config import CleanConfig, InputConfig
from shopseg.datasets import generate_lines, generate_shop, sample_path
from shopseg.features import FeatureSet, build_features
from shopseg.ingest import IngestResult, ingest_transactions

pytestmark = [pytest.mark.spark, pytest.mark.slow]

#: features that are whole numbers on both engines (compared exactly)
INTEGER_FEATURES = {"recency_days", "frequency", "tenure_days", "distinct_products", "n_lines", "active_months"}


@pytest.fixture(scope="module")
def spark() -> Any:
    return spark_support.session()


@dataclass
class Outcome:
    ingest: IngestResult
    clean: CleanResult
    features: FeatureSet
    quarantine: pd.DataFrame
    returns: pd.DataFrame


def _run(backend: Backend, inputs: list[Path], work: Path, clean: CleanConfig, **cfg: Any) -> Outcome:
    ing = ingest_transactions(backend, inputs, InputConfig(**cfg), work=work)
    cl = clean_transactions(backend, ing, clean)
    fs = build_features(backend, present_columns=set(ing.mapping.source))
    quarantine = backend.df("SELECT _row_id, reason FROM quarantine WHERE _row_id IS NOT NULL ORDER BY _row_id")
    returns = backend.df("SELECT _row_id, customer_id, product_id, quantity, matched FROM returns ORDER BY _row_id")
    return Outcome(ing, cl, fs, quarantine, returns)


def both(
    spark: Any, tmp_path: Path, inputs: list[Path], clean: CleanConfig | None = None, **cfg: Any
) -> tuple[Outcome, Outcome]:
    from shopseg.backends.spark import SparkBackend

    clean = clean or CleanConfig()
    duck = DuckDBBackend(tmp_path / "run.duckdb")
    sb = SparkBackend(tmp_path / "warehouse", spark=spark)
    try:
        d = _run(duck, inputs, tmp_path / "work-duckdb", clean, **cfg)
        s = _run(sb, inputs, tmp_path / "work-spark", clean, **cfg)
    finally:
        duck.close()
        sb.close()
    return d, s


def assert_same(d: Outcome, s: Outcome) -> None:
    # ingest: what was read and how it was understood
    assert (s.ingest.raw_rows, s.ingest.rejected_lines) == (d.ingest.raw_rows, d.ingest.rejected_lines)
    assert s.ingest.mapping.source == d.ingest.mapping.source
    assert s.ingest.mapping.date_format == d.ingest.mapping.date_format
    assert s.ingest.mapping.decimal_comma == d.ingest.mapping.decimal_comma
    # reconciliation counts, rule by rule
    assert s.clean.as_dict() == d.clean.as_dict()
    pd.testing.assert_frame_equal(
        s.clean.reconciliation[["code", "rows"]], d.clean.reconciliation[["code", "rows"]], check_dtype=False
    )
    assert s.clean.outlier_customers == d.clean.outlier_customers
    # the same rows quarantined for the same reasons, the same returns matched
    pd.testing.assert_frame_equal(s.quarantine, d.quarantine, check_dtype=False)
    pd.testing.assert_frame_equal(s.returns, d.returns, check_dtype=False)
    # every feature of every customer
    fd = d.features.frame.set_index("customer_id").sort_index()
    fs = s.features.frame.set_index("customer_id").sort_index()
    assert list(fs.index) == list(fd.index)
    assert list(fs.columns) == list(fd.columns)
    assert s.features.as_of == d.features.as_of
    assert len(fd) > 0
    for col in fd.columns:
        a, b = fs[col], fd[col]
        if col in INTEGER_FEATURES:
            assert a.to_numpy(float).tolist() == b.to_numpy(float).tolist(), col
        elif col in d.features.numeric:
            x, y = a.to_numpy(float), b.to_numpy(float)
            assert np.array_equal(np.isnan(x), np.isnan(y)), col
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=0, err_msg=col)
        else:
            assert list(pd.to_datetime(a)) == list(pd.to_datetime(b)), col


def _shop_frame(n: int, seed: int) -> pd.DataFrame:
    return generate_shop(n, seed=seed, quirks=True).transactions


def test_bundled_sample(spark: Any, tmp_path: Path) -> None:
    d, s = both(spark, tmp_path, [sample_path()])
    assert d.ingest.mapping.date_format == "%m/%d/%Y %H:%M"
    assert d.clean.as_dict()["by_rule"]["duplicate"] > 0  # the real quirks are exercised
    assert_same(d, s)


def test_generated_shop_as_parquet_with_outliers_removed(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / "shop.parquet"
    _shop_frame(300, seed=11).to_parquet(path, index=False)
    d, s = both(spark, tmp_path, [path], CleanConfig(outliers="remove", outlier_threshold=2.0))
    assert d.clean.outlier_customers, "the threshold is low enough to remove someone"
    assert_same(d, s)
    assert_same_segments(d, s)


def assert_same_segments(d: Outcome, s: Outcome) -> None:
    """Segments of the DuckDB run's features (scikit-learn K-Means) and of the Spark run's features (MLlib
    K-Means): the same partition from the same initial centres, ARI >= 0.99 from each engine's own start."""
    from shopseg.segment import KMeansSegmenter
    from shopseg.segment.spark_mllib import SparkKMeansSegmenter

    features = ["recency_days", "frequency", "avg_order_value", "tenure_days"]
    quick: dict[str, Any] = {"stability_resamples": 0, "gap_references": 0, "seed": 0}
    fd, fs = d.features.frame.sort_values("customer_id"), s.features.frame.sort_values("customer_id")
    duck = KMeansSegmenter(features, **quick).fit(fd)
    x = duck.transform(fd)
    start = duck.centers_ + 0.25  # not the converged centres: Lloyd's iterations have work to do
    ref = KMeans(n_clusters=len(start), init=start, n_init=1, tol=0.0, max_iter=300).fit(x)
    same_start = SparkKMeansSegmenter(
        features, k=len(start), init_centers=start.tolist(), tol=1e-12, max_iter=300, **quick
    ).fit(fs)
    assert adjusted_rand_score(ref.labels_, same_start.labels_) == 1.0
    own = SparkKMeansSegmenter(features, **quick).fit(fs)
    assert own.k_ == duck.k_
    assert adjusted_rand_score(duck.labels_, own.labels_) >= 0.99


def test_generated_shop_as_csv_files_and_parquet_together(spark: Any, tmp_path: Path) -> None:
    """Text CSV (two files, one with a malformed line) beside typed Parquet: everything is read as text."""
    frame = _shop_frame(250, seed=12)
    third = len(frame) // 3
    frame.iloc[:third].to_csv(tmp_path / "a.csv", index=False)
    text = frame.iloc[third : 2 * third].to_csv(index=False, date_format="%d.%m.%Y %H:%M")
    lines = text.splitlines()
    lines.insert(5, "536999,85123A,TOO,MANY,FIELDS,1,2,3,4")
    (tmp_path / "b.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    frame.iloc[2 * third :].to_parquet(tmp_path / "c.parquet", index=False)
    d, s = both(spark, tmp_path, [tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.parquet"])
    assert d.ingest.rejected_lines == 1
    assert_same(d, s)


def test_benchmark_generator_lines(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / "lines.parquet"
    pq.write_table(pa.concat_tables(list(generate_lines(20_000, seed=5, chunk_rows=7_000))), path)
    d, s = both(spark, tmp_path, [path])
    by_rule = d.clean.as_dict()["by_rule"]
    assert by_rule["missing_customer"] > 0 and by_rule["cancellation"] > 0 and by_rule["duplicate"] > 0
    assert_same(d, s)


def test_semicolon_csv_with_decimal_commas_and_day_first_dates(spark: Any, tmp_path: Path) -> None:
    frame = _shop_frame(120, seed=13)
    text = frame.to_csv(index=False, sep=";", decimal=",", date_format="%d/%m/%Y %H:%M")
    (tmp_path / "eu.csv").write_text(text, encoding="cp1252", errors="replace")
    d, s = both(spark, tmp_path, [tmp_path / "eu.csv"])
    assert d.ingest.mapping.decimal_comma
    assert d.ingest.mapping.date_format == "%d/%m/%Y %H:%M"
    assert_same(d, s)


def test_a_database_exports_rowid_column_in_parquet_and_csv(spark: Any, tmp_path: Path) -> None:
    """Inputs with a 'rowid' column (the raw tables' own name for the row identity) read alike on both
    engines: the column is read as 'rowid_', the lines keep their identity."""
    frame = _shop_frame(80, seed=21)
    frame.insert(0, "rowid", range(100, 100 + len(frame)))
    frame.iloc[: len(frame) // 2].to_parquet(tmp_path / "a.parquet", index=False)
    frame.iloc[len(frame) // 2 :].to_csv(tmp_path / "b.csv", index=False)
    d, s = both(spark, tmp_path, [tmp_path / "a.parquet", tmp_path / "b.csv"])
    assert any("'rowid' read as 'rowid_'" in n for n in d.ingest.notes)
    assert_same(d, s)


def test_generated_shop_with_orders_events_and_customer_attributes(spark: Any, tmp_path: Path) -> None:
    """All three sources: order lines and a clickstream (with planted bad rows) cleaned and turned into
    features on each engine, then the customer table joined on the run's DuckDB database (where the Spark
    engine publishes its tables): the same counts, quarantine and joined features."""
    from shopseg.backends.spark import SparkBackend
    from shopseg.clean.events import clean_events, combine_quarantine
    from shopseg.config import CustomersConfig, EventsConfig
    from shopseg.datasets_events import generate_events
    from shopseg.features.customers import join_run_features, load_customer_table
    from shopseg.features.events import build_run_features
    from shopseg.ingest.events import ingest_events

    g = generate_events(150, seed=3)
    events = g.events.astype({"user_id": "Int64"})
    bad = events.iloc[[0, 1, 2, 3]].copy()
    bad.iloc[0, events.columns.get_loc("user_id")] = None  # missing_customer
    bad.iloc[1, events.columns.get_loc("event_type")] = "zzz"  # unknown_event_type
    bad.iloc[2, events.columns.get_loc("price")] = -1.0  # non_positive_price
    events = pd.concat([events, bad, events.iloc[[10]]], ignore_index=True)  # + exact duplicates
    events.to_parquet(tmp_path / "events.parquet", index=False)
    g.orders.to_parquet(tmp_path / "orders.parquet", index=False)
    g.customers.to_parquet(tmp_path / "customers.parquet", index=False)

    results = {}
    duck = DuckDBBackend(tmp_path / "run.duckdb")
    published = DuckDBBackend(tmp_path / "spark-run.duckdb")
    sb = SparkBackend(tmp_path / "warehouse", spark=spark)
    try:
        for name, engine, database in (("duckdb", duck, duck), ("spark", sb, published)):
            work = tmp_path / f"work-{name}"
            oi = ingest_transactions(engine, [tmp_path / "orders.parquet"], InputConfig(), work=work)
            ei = ingest_events(engine, [tmp_path / "events.parquet"], EventsConfig(), work=work)
            oc = clean_transactions(engine, oi, CleanConfig())
            ec = clean_events(engine, ei, EventsConfig())
            combine_quarantine(engine, orders=True, events=True)
            fs = build_run_features(
                engine, None, order_columns=set(oi.mapping.source), event_columns=set(ei.mapping.source)
            )
            engine.publish(database)
            cust = load_customer_table(
                database, [str(tmp_path / "customers.parquet")], CustomersConfig(), as_of=fs.as_of, alone=False,
                work=work,
            )  # fmt: skip
            joined = join_run_features(cust, fs)
            quarantine = database.df(
                "SELECT source_table, _row_id, reason FROM quarantine WHERE _row_id IS NOT NULL ORDER BY 1, 2"
            )
            results[name] = (oc.as_dict(), ec.as_dict(), joined, quarantine, list(fs.frame.columns))
    finally:
        duck.close()
        published.close()
        sb.close()
    d, s = results["duckdb"], results["spark"]
    # reconciliation of both sources, rule by rule
    assert s[0] == d[0] and s[1] == d[1]
    by_rule = d[1]["by_rule"]
    assert by_rule["missing_customer"] >= 1 and by_rule["unknown_event_type"] >= 1 and by_rule["duplicate"] >= 1
    pd.testing.assert_frame_equal(s[3], d[3], check_dtype=False)
    # every feature of every customer: order, event and customer-attribute columns
    fd = d[2].frame.set_index("customer_id").sort_index()
    fs_ = s[2].frame.set_index("customer_id").sort_index()
    assert list(fs_.index) == list(fd.index) and list(fs_.columns) == list(fd.columns)
    assert len(fd) == 150
    assert len(fd.columns) > len(d[4]) - 1, "the customer table added columns to the order and event features"
    for col in fd.columns:
        if col in d[2].numeric:
            x, y = fs_[col].to_numpy(float), fd[col].to_numpy(float)
            assert np.array_equal(np.isnan(x), np.isnan(y)), col
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=0, err_msg=col)
        else:
            assert fs_[col].astype(str).tolist() == fd[col].astype(str).tolist(), col
