"""One contract for every Backend (DuckDB, Spark): the same DuckDB-dialect SQL gives the same tables.

Every test runs against both engines and checks hand-computed answers, so a difference between the engines
shows up as a failure of one of them. Spark runs in local mode on the session shared by the test run.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import spark_support
from shopseg.backends import DuckDBBackend
from shopseg.backends.base import Backend, CsvGroup, RawPlan
from shopseg.errors import BackendError

ENGINES = ["duckdb", pytest.param("spark", marks=[pytest.mark.spark, pytest.mark.slow])]


@pytest.fixture(params=ENGINES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b: Any
    if request.param == "duckdb":
        b = DuckDBBackend(tmp_path / "run.duckdb")
    else:
        from shopseg.backends.spark import SparkBackend

        b = SparkBackend(tmp_path / "warehouse", spark=spark_support.session())
    yield b
    b.close()


ORDERS = pa.table(
    {
        "customer_id": ["a", "a", "b", None, "c"],
        "amount": [10.0, 2.5, 7.0, 1.0, None],
        "n": pa.array([1, 2, 3, 4, 5], pa.int64()),
        "ts": pa.array(
            [datetime(2011, 1, 3, 9, 30), datetime(2011, 1, 9), datetime(2011, 2, 1, 23, 59, 59), None, None],
            pa.timestamp("us"),
        ),
    }
)


def test_tables_columns_and_types(backend: Backend) -> None:
    backend.create_table("orders", ORDERS)
    assert backend.has_table("orders")
    assert not backend.has_table("no_such_table")
    assert backend.columns("orders") == [
        ("customer_id", "VARCHAR"),
        ("amount", "DOUBLE"),
        ("n", "BIGINT"),
        ("ts", "TIMESTAMP"),
    ]
    assert backend.columns_of("SELECT customer_id, sum(amount) AS total FROM orders GROUP BY ALL") == [
        "customer_id",
        "total",
    ]


def test_queries_come_back_as_rows_scalars_frames_and_arrow(backend: Backend) -> None:
    backend.create_table("orders", ORDERS)
    sql = (
        "SELECT customer_id, sum(amount) AS total, count(*) AS lines, max(ts) AS last FROM orders "
        "WHERE customer_id IS NOT NULL GROUP BY ALL ORDER BY customer_id"
    )
    assert backend.rows(sql) == [
        ("a", 12.5, 2, datetime(2011, 1, 9)),
        ("b", 7.0, 1, datetime(2011, 2, 1, 23, 59, 59)),
        ("c", None, 1, None),
    ]
    assert backend.scalar("SELECT count(DISTINCT customer_id) FROM orders") == 3
    assert backend.scalar("SELECT max(n) FROM orders WHERE n > 99") is None
    frame = backend.df(sql)
    assert list(frame["customer_id"]) == ["a", "b", "c"]
    assert frame["total"].iloc[0] == 12.5 and pd.isna(frame["total"].iloc[2])
    assert frame["last"].iloc[1] == pd.Timestamp(2011, 2, 1, 23, 59, 59)
    table = backend.arrow(sql)
    assert table.column_names == ["customer_id", "total", "lines", "last"]
    assert table.column("lines").to_pylist() == [2, 1, 1]


def test_parameters_are_bound(backend: Backend) -> None:
    backend.create_table("orders", ORDERS)
    n = backend.scalar("SELECT count(*) FROM orders WHERE customer_id = ? AND ts < ?", ["a", datetime(2011, 1, 5)])
    assert n == 1
    backend.execute("CREATE OR REPLACE TEMP TABLE picked AS SELECT unnest(?) AS customer_id", [["a", "c"]])
    assert backend.scalar("SELECT count(*) FROM orders WHERE customer_id IN (SELECT customer_id FROM picked)") == 3


def test_views_follow_the_table_they_read(backend: Backend) -> None:
    backend.create_table("orders", ORDERS)
    backend.execute("CREATE OR REPLACE VIEW big AS SELECT * FROM orders WHERE amount > 4")
    assert backend.scalar("SELECT count(*) FROM big") == 2
    # replacing a table from itself, as the recommendation step does (with the same columns: a Spark view's
    # columns are fixed when it is made)
    backend.execute("CREATE OR REPLACE TABLE orders AS SELECT customer_id, amount * 2 AS amount, n, ts FROM orders")
    assert backend.scalar("SELECT sum(amount) FROM big") == 39.0
    assert backend.scalar("SELECT count(*) FROM big") == 3


def test_update_changes_matching_rows_only(backend: Backend) -> None:
    backend.create_table("orders", ORDERS)
    backend.execute("CREATE OR REPLACE TABLE flagged AS SELECT *, CAST(NULL AS VARCHAR) AS reason FROM orders")
    backend.execute("CREATE OR REPLACE TABLE pick AS SELECT 2 AS n UNION ALL SELECT 5")
    backend.execute("UPDATE flagged SET reason = 'picked' WHERE n IN (SELECT n FROM pick)")
    # a NULL condition updates nothing (customer_id IS NULL for n = 4)
    backend.execute("UPDATE flagged SET reason = 'a' || reason, amount = -1 WHERE customer_id = 'a'")
    assert backend.rows("SELECT n, reason, amount FROM flagged ORDER BY n") == [
        (1, None, -1.0),
        (2, "apicked", -1.0),
        (3, None, 7.0),
        (4, None, 1.0),
        (5, "picked", None),
    ]
    backend.execute("DROP TABLE pick")
    assert not backend.has_table("pick")


def test_registered_frames_are_queryable(backend: Backend) -> None:
    backend.register("people", pd.DataFrame({"customer_id": ["a", "b"], "age": [31, 40]}))
    backend.create_table("orders", ORDERS)
    rows = backend.rows(
        "SELECT p.customer_id, p.age, count(*) AS lines FROM orders o JOIN people p USING (customer_id) "
        "GROUP BY ALL ORDER BY 1"
    )
    assert rows == [("a", 31, 2), ("b", 40, 1)]


def test_outputs_are_written_in_order_and_atomically(backend: Backend, tmp_path: Path) -> None:
    backend.create_table("orders", ORDERS)
    out = tmp_path / "out"
    out.mkdir()
    backend.to_parquet("SELECT n, customer_id, ts FROM orders ORDER BY n DESC", out / "o.parquet")
    backend.to_csv("SELECT n, customer_id, amount FROM orders ORDER BY n", out / "o.csv")
    table = pq.read_table(out / "o.parquet")
    assert table.column("n").to_pylist() == [5, 4, 3, 2, 1]
    assert table.column("ts").to_pylist()[2] == datetime(2011, 2, 1, 23, 59, 59)
    csv = pd.read_csv(out / "o.csv")
    assert list(csv.columns) == ["n", "customer_id", "amount"]
    assert csv["amount"].tolist()[:3] == [10.0, 2.5, 7.0]
    assert sorted(p.name for p in out.iterdir()) == ["o.csv", "o.parquet"]


def test_bad_sql_is_a_backend_error(backend: Backend) -> None:
    with pytest.raises(BackendError):
        backend.rows("SELECT no_such_column FROM no_such_table")


def test_raw_files_load_in_input_order_with_malformed_lines_apart(backend: Backend, tmp_path: Path) -> None:
    """Parquet first, then CSV groups in order, then Excel; rowid counts rows in that order from 0; malformed
    CSV lines go to the rejects table."""
    pq.write_table(pa.table({"id": ["p1", "p2"], "qty": pa.array([1, 2], pa.int64())}), tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("id,qty\nb1,3\nb2,4,extra\nb3,5\n", encoding="utf-8")
    (tmp_path / "c.csv.gz").write_bytes(gzip.compress(b"id,qty\nc1,6\n"))
    (tmp_path / "d.csv").write_text("id;qty;note\nd1;7;x\n", encoding="utf-8")
    plan = RawPlan(
        parquet=[tmp_path / "a.parquet"],
        csv=[
            CsvGroup(",", True, ("id", "qty"), [(tmp_path / "b.csv", tmp_path / "b.csv")]),
            CsvGroup(",", True, ("id", "qty"), [(tmp_path / "c.csv.gz", tmp_path / "c.csv.gz")]),
            CsvGroup(";", True, ("id", "qty", "note"), [(tmp_path / "d.csv", tmp_path / "d.csv")]),
        ],
        excel=[(tmp_path / "e.xlsx", pa.table({"id": ["e1"], "qty": ["8"]}))],
        as_text=True,
    )
    assert backend.load_raw("raw", plan) == (7, 1)
    assert [c for c, _ in backend.columns("raw")] == ["id", "qty", "_source", "note"] or [
        c for c, _ in backend.columns("raw")
    ] == ["id", "qty", "note", "_source"]
    rows = backend.rows("SELECT rowid, id, qty, note, _source FROM raw ORDER BY rowid")
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (0, "p1", "1", None),
        (1, "p2", "2", None),
        (2, "b1", "3", None),
        (3, "b3", "5", None),
        (4, "c1", "6", None),
        (5, "d1", "7", "x"),
        (6, "e1", "8", None),
    ]
    assert [Path(r[4]).name for r in rows] == ["a.parquet"] * 2 + ["b.csv"] * 2 + ["c.csv.gz", "d.csv", "e.xlsx"]
    rejects = backend.rows("SELECT _source, csv_line FROM raw_rejects")
    assert [(Path(s).name, line) for s, line in rejects] == [("b.csv", "b2,4,extra")]
