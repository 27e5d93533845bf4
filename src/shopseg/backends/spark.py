"""Spark backend: the run's SQL on Apache Spark (local mode or a cluster), translated from DuckDB's dialect.

Every statement goes through :data:`shopseg.backends.dialect.SPARK` (sqlglot plus the fix-ups listed there),
so ingest, cleaning and the feature definitions in ``features/sql/*.sql`` are the same text on both engines.
What DuckDB keeps in its database file, Spark keeps as Parquet under the *warehouse* folder (by default
``<run>/spark-tables``): ``CREATE TABLE … AS`` writes a new version of the table there and points a temporary
view of the same name at it; ``CREATE VIEW`` makes a temporary view; ``UPDATE`` rewrites the table with the
assignments applied where the condition holds. Results come back to the driver through Arrow.

Files are read by Spark's own readers (Parquet, CSV with every value as text, malformed lines kept apart);
the readers of :mod:`shopseg.ingest.readers` sniff them first, exactly as for DuckDB. Rows get DuckDB's row
identity: ``rowid`` counts the rows in input order (file by file, in the planned order) from 0, so the clean
and quarantined rows carry the same ``_row_id`` on both engines. The column ``rowid`` is hidden from
:meth:`SparkBackend.columns`, as DuckDB's pseudo-column is.

The session is configured for DuckDB's semantics (:data:`SESSION_CONF`): naive timestamps in UTC, NULL rather
than an error for failed casts and division by zero (ANSI mode off).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
import warnings
from functools import reduce
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql import types as st
from sqlglot import exp

from shopseg.backends.base import CsvGroup, RawPlan, unreserved
from shopseg.backends.dialect import SPARK
from shopseg.backends.duckdb import quote
from shopseg.errors import BackendError, ShopsegError

with warnings.catch_warnings():
    # pyspark imports pyspark.testing.utils on its first call into Java, which warns that pandas 3 is not yet
    # fully supported; shopseg never hands pandas objects to pyspark (Arrow only), so the notice is moot
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    import pyspark.testing.utils  # noqa: F401

__all__ = ["SESSION_CONF", "SparkBackend", "spark_error", "spark_session"]

log = logging.getLogger(__name__)

#: Session settings the shared SQL relies on; set on every session a SparkBackend uses (also one passed in).
SESSION_CONF: dict[str, str] = {
    # DuckDB's TIMESTAMP is naive: no time-zone conversions anywhere, timestamps read as written
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    # DuckDB's try_cast/try_strptime give NULL; shopseg's SQL quarantines NULLs rather than failing
    "spark.sql.ansi.enabled": "false",
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
    "spark.sql.caseSensitive": "false",
    "spark.sql.parquet.compression.codec": "zstd",
    # a CSV line is malformed by its number of fields, which Spark only counts when it parses every column
    "spark.sql.csv.parser.columnPruning.enabled": "false",
}

#: Settings of a session the backend starts itself (a session passed in keeps its own).
START_CONF: dict[str, str] = {
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}

_HIDDEN = "rowid"
_CORRUPT = "__shopseg_corrupt"
_FILE = "__shopseg_file"
_BLOCK = "__shopseg_block"
_MONO = "__shopseg_mono"
_DELTA = "__shopseg_delta"
_MALFORMED = "malformed CSV line (wrong number of fields or bad quoting)"
#: Up to this many malformed lines, row numbers skip them exactly as DuckDB's do.
_EXACT_ROWID_LIMIT = 10_000


def _local_master(master: str) -> bool:
    return master.startswith("local")


def spark_session(
    master: str = "local[*]",
    *,
    app_name: str = "shopseg",
    driver_memory: str | None = None,
    executor_memory: str | None = None,
    shuffle_partitions: int | None = None,
    conf: dict[str, str] | None = None,
    quiet: bool = True,
) -> SparkSession:
    """Start (or join) a Spark session for shopseg: ``master`` as for spark-submit (``local[*]``,
    ``spark://host:7077``, ``yarn``, ``k8s://…``); settings in ``conf`` win over the named ones."""
    settings = dict(START_CONF)
    if _local_master(master):
        # local mode needs no network name; binding to loopback works offline and in containers
        settings["spark.driver.host"] = "127.0.0.1"
        settings["spark.driver.bindAddress"] = "127.0.0.1"
        # shopseg keeps its tables under engine.spark_warehouse; Spark SQL's own catalogue folder would otherwise
        # appear as an empty ./spark-warehouse wherever the command was started (a cluster keeps its own setting)
        settings["spark.sql.warehouse.dir"] = str(Path(tempfile.gettempdir()) / "shopseg-spark-sql-warehouse")
    if driver_memory:
        settings["spark.driver.memory"] = driver_memory
    if executor_memory:
        settings["spark.executor.memory"] = executor_memory
    if shuffle_partitions:
        settings["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    if quiet:
        props = resources.files("shopseg.backends").joinpath("spark-log4j2.properties")
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={props}"
    settings.update(SESSION_CONF)
    settings.update(conf or {})
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # the JVM failed to start: Java missing, bad master URL, no memory …
        raise BackendError(
            f"cannot start Spark with master '{master}': {str(exc).strip().splitlines()[0] if str(exc) else exc}. "
            "Spark needs Java 17 or newer on the PATH (e.g. apt-get install default-jre-headless) and a reachable "
            "master (--spark-master)"
        ) from None
    if quiet:
        spark.sparkContext.setLogLevel("ERROR")
    _quiet_python_loggers()
    return spark


def _quiet_python_loggers() -> None:
    """pyspark logs every analysis error with its Java stack as JSON on stderr; shopseg raises a BackendError
    with the message instead."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


def spark_error(exc: Exception, sql: str) -> BackendError:
    """A Spark or JVM exception as one BackendError: the message of the error and of its root cause."""
    java = getattr(exc, "java_exception", None)
    if java is not None:  # py4j: "An error occurred while calling o234.collectToPython" says nothing
        messages: list[str] = []
        while java is not None and len(messages) < 8:
            messages.append(str(java.toString()))
            java = java.getCause()
        text = messages[0] if len(messages) == 1 else f"{messages[0]} (cause: {messages[-1]})"
    else:
        text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # the message, without the query plan or stack Spark appends after it
    head = " ".join(ln for ln in lines[:6] if not ln.startswith(("at ", "==", "+-", ":-"))) or type(exc).__name__
    return BackendError(f"Spark failed: {head[:1500]}\nSQL: {sql[:2000]}")


def _q(name: str) -> str:
    """Quote an identifier for Spark SQL."""
    return "`" + name.replace("`", "``") + "`"


def _col(name: str) -> Column:
    return sf.col(_q(name))


def duckdb_type(t: st.DataType) -> str:
    """A Spark type under DuckDB's name for it (the names the shared SQL chooses expressions by)."""
    simple: dict[type[st.DataType], str] = {
        st.StringType: "VARCHAR",
        st.VarcharType: "VARCHAR",
        st.CharType: "VARCHAR",
        st.LongType: "BIGINT",
        st.IntegerType: "INTEGER",
        st.ShortType: "SMALLINT",
        st.ByteType: "TINYINT",
        st.DoubleType: "DOUBLE",
        st.FloatType: "FLOAT",
        st.BooleanType: "BOOLEAN",
        st.DateType: "DATE",
        st.TimestampNTZType: "TIMESTAMP",
        st.TimestampType: "TIMESTAMP WITH TIME ZONE",
        st.BinaryType: "BLOB",
        st.NullType: "NULL",
    }
    for klass, name in simple.items():
        if isinstance(t, klass):
            return name
    if isinstance(t, st.DecimalType):
        return f"DECIMAL({t.precision},{t.scale})"
    return t.simpleString().upper()


def _abs(path: Path | str) -> str:
    return os.path.abspath(str(path))  # noqa: PTH100 (normalised like Hadoop's paths, symlinks kept)


def _uri(path: Path | str) -> str:
    """A local path for Spark, explicitly on the local file system (a cluster's default may be HDFS)."""
    text = str(path)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        return text
    return "file://" + _abs(text)


def _file_key(spark_path: str) -> str:
    """Spark's ``_metadata.file_path`` (a URI) as the absolute local path it names."""
    parsed = urlparse(spark_path)
    local = parsed.scheme in ("file", "")
    return _abs(unquote(parsed.path)) if local else spark_path


class SparkBackend:
    """The run's tables on Spark. ``warehouse`` holds the materialised tables (a local folder or a URI that
    every executor can reach, e.g. ``hdfs:///tmp/shopseg/run1``); ``spark`` is an existing session to use
    (it is left running on close), else one is started with ``master`` and the other settings."""

    name = "spark"
    dialect = "spark"

    def __init__(
        self,
        warehouse: str | Path,
        *,
        spark: SparkSession | None = None,
        master: str = "local[*]",
        driver_memory: str | None = None,
        executor_memory: str | None = None,
        shuffle_partitions: int | None = None,
        conf: dict[str, str] | None = None,
        keep_tables: bool = True,
    ) -> None:
        if spark is None:
            # a session this process already runs (a notebook's, spark-submit's, the tests') is used as it is
            spark = SparkSession.getActiveSession()
        self.owns_session = spark is None
        self.spark = spark or spark_session(
            master,
            driver_memory=driver_memory,
            executor_memory=executor_memory,
            shuffle_partitions=shuffle_partitions,
            conf=conf,
        )
        for key, value in SESSION_CONF.items():
            self.spark.conf.set(key, value)
        _quiet_python_loggers()
        self.warehouse = str(warehouse)
        self.keep_tables = keep_tables
        self._sql_dialect = SPARK
        self._tables: dict[str, str] = {}  # table (lower case) -> path of its current version
        self._versions: dict[str, int] = {}
        self._views: set[str] = set()  # every temporary view this backend made (dropped on close)
        self._hidden: set[str] = set()  # tables with the hidden rowid column
        self._names: dict[str, str] = {}  # table (lower case) -> its name as created
        # the DuckDB statements that made, renamed or dropped views, with the view they make (for publish)
        self._view_log: list[tuple[str, str]] = []
        self._view_sql: dict[str, str] = {}  # view → its Spark SQL query

    # ------------------------------------------------------------------------------------------ SQL
    def _parse(self, sql: str, params: list[Any] | None) -> exp.Expression:
        return self._sql_dialect.parse(sql, params)

    def _frame(self, sql: str, params: list[Any] | None = None) -> DataFrame:
        text = self._sql_dialect.transpile(sql, params)
        log.debug("spark sql: %s", text)
        try:
            return self.spark.sql(text)
        except Exception as exc:
            raise spark_error(exc, text) from None

    def translate(self, sql: str) -> str:
        """The Spark SQL a DuckDB statement runs as (for docs, debugging and tests)."""
        return self._sql_dialect.transpile(sql)

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        tree = self._parse(sql, params)
        try:
            if isinstance(tree, exp.Create):
                self._create(tree)
                if str(tree.args.get("kind") or "").upper() == "VIEW":
                    self._view_log.append((_target(tree).lower(), sql))
            elif isinstance(tree, exp.Alter):
                self._alter(tree)
                self._view_log.append((tree.args["actions"][0].this.name.lower(), sql))
            elif isinstance(tree, exp.Update):
                self._update(tree)
            elif isinstance(tree, exp.Drop):
                self._drop(tree)
                if str(tree.args.get("kind") or "").upper() == "VIEW":
                    self._view_log.append(("", sql))
            elif isinstance(tree, exp.Query):
                self.spark.sql(self._sql_dialect.generate(tree))
            else:
                raise BackendError(
                    f"the Spark backend runs queries, CREATE TABLE/VIEW … AS, UPDATE and DROP; not: {sql[:300]}"
                )
        except ShopsegError:
            raise
        except Exception as exc:
            raise spark_error(exc, sql) from None

    def df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        return _to_pandas(self.arrow(sql, params))

    def arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        frame = self._frame(sql, params)
        try:
            return frame.toArrow()
        except Exception as exc:
            raise spark_error(exc, sql) from None

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        frame = self._frame(sql, params)
        try:
            return [tuple(r) for r in frame.collect()]
        except Exception as exc:
            raise spark_error(exc, sql) from None

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    # ------------------------------------------------------------------------------------------ statements
    def _create(self, tree: exp.Create) -> None:
        kind = str(tree.args.get("kind") or "").upper()
        target = tree.this
        columns: list[exp.ColumnDef] = []
        if isinstance(target, exp.Schema):
            columns = [c for c in target.expressions if isinstance(c, exp.ColumnDef)]
            target = target.this
        name = target.name
        query = tree.expression
        if kind == "VIEW" and query is not None:
            text = self._sql_dialect.generate(query)
            self.spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {_q(name)} AS {text}")
            self._views.add(name.lower())
            self._view_sql[name.lower()] = text
            self._drop_data(name)
        elif kind == "TABLE" and query is not None:
            self._materialize(name, self.spark.sql(self._sql_dialect.generate(query)))
        elif kind == "TABLE" and columns:
            ddl = ", ".join(f"{_q(c.name)} {self._sql_dialect.generate(c.args['kind'])}" for c in columns)
            self._materialize(name, self.spark.createDataFrame([], schema=ddl))
        else:
            raise BackendError(f"the Spark backend cannot run CREATE {kind} without a query: {tree.sql()[:300]}")

    def _update(self, tree: exp.Update) -> None:
        name = tree.this.name
        sets: dict[str, str] = {}
        for eq in tree.expressions:
            sets[eq.this.name.lower()] = self._sql_dialect.generate(eq.expression)
        where = tree.args.get("where")
        cond = self._sql_dialect.generate(where.this) if where is not None else "TRUE"
        cols = self.spark.table(_q(name)).columns
        unknown = set(sets) - {c.lower() for c in cols}
        if unknown:
            raise BackendError(f"UPDATE {name}: no column(s) {sorted(unknown)}")
        select = ", ".join(
            f"CASE WHEN ({cond}) THEN ({sets[c.lower()]}) ELSE {_q(c)} END AS {_q(c)}" if c.lower() in sets else _q(c)
            for c in cols
        )
        self._materialize(name, self.spark.sql(f"SELECT {select} FROM {_q(name)}"))

    def _alter(self, tree: exp.Alter) -> None:
        actions = tree.args.get("actions") or []
        if str(tree.args.get("kind") or "").upper() != "VIEW" or len(actions) != 1:
            raise BackendError(f"the Spark backend renames views only (ALTER VIEW a RENAME TO b): {tree.sql()[:300]}")
        old, new = tree.this.name, actions[0].this.name
        text = self._view_sql.pop(old.lower(), None)
        if text is None:
            self.spark.sql(f"ALTER VIEW {_q(old)} RENAME TO {_q(new)}")
        else:
            # made again under the new name from its query: a view renamed by Spark keeps its old name inside,
            # and a view that reads it by the new name then fails to resolve
            self.spark.sql(f"CREATE OR REPLACE TEMPORARY VIEW {_q(new)} AS {text}")
            self.spark.catalog.dropTempView(old)
            self._view_sql[new.lower()] = text
        self._views.discard(old.lower())
        self._views.add(new.lower())

    def _drop(self, tree: exp.Drop) -> None:
        for table in tree.args.get("tables") or [tree.this]:
            name = table.name
            self.spark.catalog.dropTempView(name)
            self._views.discard(name.lower())
            self._view_sql.pop(name.lower(), None)
            self._drop_data(name)

    def _materialize(self, name: str, frame: DataFrame, *, hidden_rowid: bool = False) -> None:
        """Write ``frame`` as the next version of table ``name`` and point the view ``name`` at it."""
        key = name.lower()
        void = [f.name for f in frame.schema.fields if isinstance(f.dataType, st.NullType)]
        if void:  # Parquet has no type for a column of NULLs (DuckDB would make it INTEGER)
            frame = frame.select(*[(_col(c).cast("string").alias(c) if c in void else _col(c)) for c in frame.columns])
        version = self._versions.get(key, 0) + 1
        path = f"{self.warehouse.rstrip('/')}/{_safe(name)}/v{version}"
        try:
            frame.write.mode("overwrite").parquet(_uri(path))
            self.spark.read.parquet(_uri(path)).createOrReplaceTempView(name)
        except Exception as exc:
            raise spark_error(exc, f"CREATE TABLE {name} AS …") from None
        old = self._tables.get(key)
        self._tables[key], self._versions[key] = path, version
        self._names[key] = name
        self._views.add(key)
        if hidden_rowid:
            self._hidden.add(key)
        else:
            self._hidden.discard(key)
        if old is not None:
            self._delete(old)

    def _drop_data(self, name: str) -> None:
        old = self._tables.pop(name.lower(), None)
        self._hidden.discard(name.lower())
        if old is not None:
            self._delete(old)

    def _delete(self, path: str) -> None:
        """Remove a folder of the warehouse (local or on the cluster's file system)."""
        if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path) or path.startswith("file://"):
            folder = Path(path.removeprefix("file://"))
            shutil.rmtree(folder, ignore_errors=True)
            if folder.parent.is_dir() and not any(folder.parent.iterdir()):
                folder.parent.rmdir()  # the table's folder, once its last version is gone
            return
        jvm: Any = self.spark.sparkContext._jvm
        hpath = jvm.org.apache.hadoop.fs.Path(path)
        hpath.getFileSystem(self.spark.sparkContext._jsc.hadoopConfiguration()).delete(hpath, True)

    # ------------------------------------------------------------------------------------------ tables
    def register(self, name: str, data: pa.Table | pd.DataFrame) -> None:
        self._dataframe(data).createOrReplaceTempView(name)
        self._views.add(name.lower())
        self._drop_data(name)

    def create_table(self, name: str, data: pa.Table | pd.DataFrame) -> None:
        self._materialize(name, self._dataframe(data))

    def _dataframe(self, data: pa.Table | pd.DataFrame) -> DataFrame:
        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        # Spark takes Arrow's plain string and list types; pandas 3 hands over large_string
        fields = []
        for f in table.schema:
            t = f.type
            if pa.types.is_large_string(t) or pa.types.is_string_view(t):
                t = pa.string()
            elif pa.types.is_dictionary(t):
                t = t.value_type if not pa.types.is_large_string(t.value_type) else pa.string()
            fields.append(pa.field(f.name, t))
        table = table.cast(pa.schema(fields))
        try:
            return self.spark.createDataFrame(table)
        except Exception as exc:
            raise spark_error(exc, "createDataFrame(<Arrow table>)") from None

    def columns(self, table: str) -> list[tuple[str, str]]:
        try:
            schema = self.spark.table(_q(table)).schema
        except Exception as exc:
            raise spark_error(exc, f"DESCRIBE {table}") from None
        hide = table.lower() in self._hidden
        return [(f.name, duckdb_type(f.dataType)) for f in schema.fields if not (hide and f.name == _HIDDEN)]

    def columns_of(self, sql: str) -> list[str]:
        return list(self._frame(sql).columns)

    def has_table(self, name: str) -> bool:
        return bool(self.spark.catalog.tableExists(name))

    # ------------------------------------------------------------------------------------------ files in
    def load_raw(self, table: str, plan: RawPlan) -> tuple[int, int]:
        """Read the planned files with Spark's readers into ``table`` (+ ``_source`` and the hidden ``rowid``)
        and ``<table>_rejects``; returns (rows, rejected)."""
        parts: list[DataFrame] = []
        order: list[tuple[str, str]] = []  # (file key, input path) in row order
        if plan.parquet:
            paths = [_uri(p) for p in plan.parquet]
            frame = self.spark.read.option("mergeSchema", "true").parquet(*paths)
            data = [c for c in frame.columns]
            cols = [(_col(c).cast("string") if plan.as_text else _col(c)).alias(unreserved(c, data)) for c in data]
            parts.append(self._with_position(frame, cols))
            order += [(_abs(p), str(p)) for p in plan.parquet]
        for group in plan.csv:
            parts.append(self._read_csv(group))
            order += [(_abs(target), str(source)) for source, target in group.files]
        for i, (path, data_table) in enumerate(plan.excel):
            key = f"excel:{i}"
            arrow = data_table.append_column(_MONO, pa.array(range(data_table.num_rows), pa.int64()))
            frame = self._dataframe(arrow)
            cols = [_col(c) for c in data_table.column_names]
            parts.append(
                frame.select(
                    *cols,
                    sf.lit(None).cast("string").alias(_CORRUPT),
                    sf.lit(key).alias(_FILE),
                    sf.lit(0).cast("long").alias(_BLOCK),
                    _col(_MONO),
                )
            )
            order.append((key, str(path)))
        union = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)
        # pass 1: rows per file split (and how many are malformed); the row positions are stable between passes
        # because they come from the file splits, which the same plan reads the same way
        try:
            stats = (
                union.groupBy(_FILE, _BLOCK)
                .agg(
                    sf.count(sf.lit(1)).alias("n"),
                    sf.count(_col(_CORRUPT)).alias("bad"),
                    sf.min(_MONO).alias("m"),
                    # Spark refuses a CSV query that reads only the corrupt-record column
                    sf.max(sf.lit(0) * sf.length(_col(union.columns[0]).cast("string"))).alias("_unused"),
                )
                .collect()
            )
        except Exception as exc:
            raise spark_error(exc, f"reading {len(order)} file(s) into {table}") from None
        # a row's identity: the rows before its split (files in planned order, splits by offset) + its position
        index = {key: i for i, (key, _) in enumerate(order)}
        source = dict(order)
        splits = []
        for r in stats:
            key = r[_FILE] if str(r[_FILE]).startswith("excel:") else _file_key(r[_FILE])
            if key not in index:
                raise BackendError(f"Spark read a file that was not planned: {r[_FILE]}")
            splits.append((index[key], int(r[_BLOCK]), str(r[_FILE]), int(r["n"]), int(r["bad"]), int(r["m"])))
        splits.sort()
        rejected = sum(s[4] for s in splits)
        key_col = sf.concat_ws("#", _col(_FILE), _col(_BLOCK).cast("string"))
        data_cols = [c for c in union.columns if c not in (_CORRUPT, _FILE, _BLOCK, _MONO)]
        # (a condition on a data column: Spark refuses CSV queries that read only the corrupt-record column)
        some_data = sf.coalesce(sf.length(_col(data_cols[0]).cast("string")), sf.lit(0)) >= 0
        # malformed lines take no row number (as in DuckDB): good rows count the malformed ones before them in
        # their split, when there are few enough to list (else the numbers keep gaps where those lines were)
        exact = rejected <= _EXACT_ROWID_LIMIT
        bad_before: Column = sf.lit(0)
        if 0 < rejected <= _EXACT_ROWID_LIMIT:
            listed: dict[str, list[int]] = {}
            for r in union.where(_col(_CORRUPT).isNotNull() & some_data).select(key_col, _MONO).collect():
                listed.setdefault(str(r[0]), []).append(int(r[1]))
            bad_map = sf.create_map(
                *[x for k, monos in listed.items() for x in (sf.lit(k), sf.array(*[sf.lit(m) for m in sorted(monos)]))]
            )
            bad_list = sf.coalesce(sf.element_at(bad_map, key_col), sf.array().cast("array<bigint>"))
            bad_before = sf.size(sf.filter(bad_list, lambda m: m < _col(_MONO)))
        delta: list[Column] = []
        sources: list[Column] = []
        seen = 0
        for fi, block, spark_file, n, bad, first in splits:
            split_key = sf.lit(f"{spark_file}#{block}")
            delta += [split_key, sf.lit(seen - first)]
            sources += [split_key, sf.lit(source[order[fi][0]])]
            seen += n - bad if exact else n
        rows = sum(s[3] - s[4] for s in splits)
        placed = union.select(
            *[_col(c) for c in data_cols],
            sf.element_at(sf.create_map(*sources), key_col).alias("_source"),
            (_col(_MONO) + sf.element_at(sf.create_map(*delta), key_col) - bad_before).alias(_HIDDEN),
            _col(_CORRUPT),
        )
        # pass 2 (and 3 only when lines were malformed)
        self._materialize(table, placed.where(_col(_CORRUPT).isNull()).drop(_CORRUPT), hidden_rowid=True)
        rejects = placed.where(_col(_CORRUPT).isNotNull() & some_data).select(
            _col("_source"),
            sf.lit(None).cast("long").alias("line"),
            _col(_CORRUPT).alias("csv_line"),
            sf.lit(_MALFORMED).alias("error"),
        )
        if not rejected:
            rejects = self.spark.createDataFrame([], schema=rejects.schema)
        self._materialize(f"{table}_rejects", rejects)
        return rows, rejected

    def _read_csv(self, group: CsvGroup) -> DataFrame:
        schema = st.StructType(
            [st.StructField(c, st.StringType()) for c in group.columns] + [st.StructField(_CORRUPT, st.StringType())]
        )
        reader = (
            self.spark.read.schema(schema)
            .option("header", group.header)
            .option("sep", group.delimiter)
            .option("quote", '"')
            .option("escape", '"')
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", _CORRUPT)
            .option("multiLine", False)
            .option("encoding", "UTF-8")
            .option("enforceSchema", True)
        )
        frame = reader.csv([_uri(target) for _, target in group.files])
        return self._with_position(frame, [_col(c) for c in group.columns], corrupt=True)

    @staticmethod
    def _with_position(frame: DataFrame, cols: list[Column], *, corrupt: bool = False) -> DataFrame:
        return frame.select(
            *cols,
            (_col(_CORRUPT) if corrupt else sf.lit(None).cast("string")).alias(_CORRUPT),
            sf.col("_metadata.file_path").alias(_FILE),
            sf.col("_metadata.file_block_start").alias(_BLOCK),
            sf.monotonically_increasing_id().alias(_MONO),
        )

    # ------------------------------------------------------------------------------------------ files out
    def _parts(self, sql: str) -> tuple[list[pa.Table], pa.Schema]:
        """The query's result in order, as Arrow tables of one written part each (bounded driver memory)."""
        frame = self._frame(sql)
        path = f"{self.warehouse.rstrip('/')}/__export_{uuid.uuid4().hex[:8]}"
        try:
            frame.write.mode("overwrite").parquet(_uri(path))
            written = self.spark.read.parquet(_uri(path))
            schema = written.limit(0).toArrow().schema
            names = sorted(r[0] for r in written.select(sf.col("_metadata.file_name")).distinct().collect())
            chunks = [written.where(sf.col("_metadata.file_name") == n).toArrow() for n in names]
        except Exception as exc:
            raise spark_error(exc, sql) from None
        finally:
            self._delete(path)
        return chunks, schema

    def to_parquet(self, sql: str, path: Path) -> None:
        """Write a query to one Parquet file on the driver, atomically (temp file + rename)."""
        chunks, schema = self._parts(sql)
        tmp = path.with_name(path.name + ".tmp")
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for chunk in chunks:
                writer.write_table(chunk.cast(schema))
        tmp.replace(path)

    def to_csv(self, sql: str, path: Path) -> None:
        """Write a query to one CSV file with a header on the driver, atomically."""
        chunks, schema = self._parts(sql)
        tmp = path.with_name(path.name + ".tmp")
        first = True
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            for chunk in chunks or [schema.empty_table()]:
                _to_pandas(chunk).to_csv(fh, index=False, header=first)
                first = False
        tmp.replace(path)

    def publish(self, database: Any) -> None:
        """Make this run's tables and views readable by the run's DuckDB database (the steps after the
        features run there, on the driver): each table becomes a DuckDB view over its Parquet files, and the
        views are made again from their original DuckDB SQL, in the order they were made."""
        for key, path in self._tables.items():
            name = self._names.get(key, key)
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path) and not path.startswith("file://"):
                raise BackendError(
                    f"the tables are at {self.warehouse}, which DuckDB on the driver cannot read; set "
                    "engine.spark_warehouse to a local folder or a mount every machine shares"
                )
            folder = Path(path.removeprefix("file://"))
            if any(folder.glob("*.parquet")):
                pattern = str(folder / "*.parquet").replace("'", "''")
                database.execute(f"CREATE OR REPLACE VIEW {quote(name)} AS SELECT * FROM read_parquet('{pattern}')")
            else:  # Spark writes no file for a table without rows
                database.create_table(name, self.arrow(f"SELECT * FROM {quote(name)} LIMIT 0"))
        for view, statement in self._view_log:
            if view not in self._tables:  # (a view later replaced by a table of the same name)
                database.execute(statement)

    def close(self) -> None:
        """Drop this backend's views; stop the session if the backend started it. The warehouse keeps the
        final version of every table unless ``keep_tables`` is False."""
        try:
            for name in sorted(self._views):
                self.spark.catalog.dropTempView(name)
            if not self.keep_tables:
                for name in list(self._tables):
                    self._drop_data(name)
        finally:
            self._views.clear()
            if self.owns_session:
                self.spark.stop()


def _target(tree: exp.Create) -> str:
    target = tree.this
    return str(target.this.name if isinstance(target, exp.Schema) else target.name)


def _safe(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]", "_", name) or "_"


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow → pandas as DuckDB's ``.df()`` gives it (decimals as floats)."""
    cols = []
    for f in table.schema:
        cols.append(pa.float64() if pa.types.is_decimal(f.type) else f.type)
    if any(pa.types.is_decimal(f.type) for f in table.schema):
        table = table.cast(pa.schema([pa.field(f.name, t) for f, t in zip(table.schema, cols, strict=True)]))
    return table.to_pandas()
