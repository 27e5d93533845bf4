"""DuckDB backend: the run's database is one file, ``out/<run>/shopseg.duckdb``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from shopseg.backends.base import CsvGroup, RawPlan, unreserved
from shopseg.errors import BackendError


def quote(name: str) -> str:
    """Quote an identifier for SQL."""
    return '"' + name.replace('"', '""') + '"'


def sql_str(value: Path | str) -> str:
    """A value for the inside of a single-quoted SQL string."""
    return str(value).replace("'", "''")


class DuckDBBackend:
    """The embedded default engine."""

    name = "duckdb"
    dialect = "duckdb"

    def __init__(
        self, path: str | Path = ":memory:", *, memory_limit: str | None = None, threads: int | None = None
    ) -> None:
        self.path = str(path)
        try:
            self.con = duckdb.connect(self.path)
        except duckdb.Error as exc:
            raise BackendError(f"cannot open DuckDB database '{path}': {exc}") from None
        if memory_limit:
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        tmp = Path(self.path).parent / ".tmp" if self.path != ":memory:" else None
        if tmp is not None:
            self.con.execute(f"SET temp_directory = '{tmp}'")
        self.con.execute("SET preserve_insertion_order = true")

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        try:
            self.con.execute(sql, params)
        except duckdb.Error as exc:
            raise BackendError(f"DuckDB failed: {exc}\nSQL: {sql[:2000]}") from None

    def df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        try:
            return self.con.execute(sql, params).df()
        except duckdb.Error as exc:
            raise BackendError(f"DuckDB failed: {exc}\nSQL: {sql[:2000]}") from None

    def arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        try:
            # a relation hands Arrow over without the copy a DB-API result makes (DuckDB warns about that)
            table: pa.Table = self.con.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise BackendError(f"DuckDB failed: {exc}\nSQL: {sql[:2000]}") from None
        return table

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        try:
            rows = self.con.execute(sql, params).fetchall()
            row = rows[0] if rows else None
        except duckdb.Error as exc:
            raise BackendError(f"DuckDB failed: {exc}\nSQL: {sql[:2000]}") from None
        return None if row is None else row[0]

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """Every row of a query as tuples."""
        try:
            return [tuple(r) for r in self.con.execute(sql, params).fetchall()]
        except duckdb.Error as exc:
            raise BackendError(f"DuckDB failed: {exc}\nSQL: {sql[:2000]}") from None

    def register(self, name: str, data: pa.Table | pd.DataFrame) -> None:
        self.con.register(name, data)

    def create_table(self, name: str, data: pa.Table | pd.DataFrame) -> None:
        view = f"__reg_{os.getpid()}_{abs(hash(name))}"
        self.con.register(view, data)
        try:
            self.execute(f"CREATE OR REPLACE TABLE {quote(name)} AS SELECT * FROM {quote(view)}")
        finally:
            self.con.unregister(view)

    def columns(self, table: str) -> list[tuple[str, str]]:
        """Columns and their types; ``rowid`` is the row identity (DuckDB's pseudo-column, or the column that
        carries it in a table another engine made), never listed as data."""
        rows = self.con.execute(f"DESCRIBE {quote(table)}").fetchall()
        return [(str(r[0]), str(r[1])) for r in rows if str(r[0]) != "rowid"]

    def columns_of(self, sql: str) -> list[str]:
        """The column names a query returns."""
        try:
            rel = self.con.execute(sql)
        except duckdb.Error as exc:
            raise BackendError(f"DuckDB failed: {exc}\nSQL: {sql[:2000]}") from None
        return [str(d[0]) for d in rel.description or []]

    def has_table(self, name: str) -> bool:
        n = self.scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name])
        return bool(n)

    def to_parquet(self, sql: str, path: Path) -> None:
        """Write a query to Parquet atomically (temp file + rename)."""
        tmp = path.with_name(path.name + ".tmp")
        self.execute(f"COPY ({sql}) TO '{tmp}' (FORMAT parquet, COMPRESSION zstd)")
        tmp.replace(path)

    def to_csv(self, sql: str, path: Path) -> None:
        """Write a query to CSV with a header, atomically (temp file + rename)."""
        tmp = path.with_name(path.name + ".tmp")
        self.execute(f"COPY ({sql}) TO '{tmp}' (FORMAT csv, HEADER true)")
        tmp.replace(path)

    def load_raw(self, table: str, plan: RawPlan) -> tuple[int, int]:
        """Read the planned files into ``table`` (Parquet with ``read_parquet``, CSV with ``read_csv`` keeping
        malformed lines in ``<table>_rejects``, Excel sheets registered from Arrow); returns (rows, rejected)."""
        parts: list[str] = []
        reject_sql: list[str] = []
        if plan.parquet and not plan.csv and not plan.excel and not plan.as_text:
            return self._parquet_view(table, plan.parquet)
        if plan.parquet:
            lst = ", ".join(f"'{sql_str(f)}'" for f in plan.parquet)
            cols = self.columns_of(f"SELECT * FROM read_parquet([{lst}], union_by_name = true) LIMIT 0")
            sel = ", ".join(
                (f"CAST({quote(c)} AS VARCHAR)" if plan.as_text else quote(c)) + f" AS {quote(unreserved(c, cols))}"
                for c in cols
            )
            parts.append(
                f"SELECT {sel}, filename AS _source FROM read_parquet([{lst}], union_by_name = true, filename = true)"
            )
        if plan.csv:
            selects = []
            for i, group in enumerate(plan.csv):
                select, reject = _read_csv_sql(group, i)
                selects.append(select)
                reject_sql.append(reject)
            parts.append(" UNION ALL BY NAME ".join(f"({s})" for s in selects))
        for path, data in plan.excel:
            name = f"__excel_{len(parts)}"
            self.register(name, data)
            sel = ", ".join(quote(c) for c in data.column_names)
            parts.append(f"SELECT {sel}, '{sql_str(path)}' AS _source FROM {quote(name)}")
        union = " UNION ALL BY NAME ".join(f"({p})" for p in parts)
        self.execute(f"CREATE OR REPLACE TABLE {quote(table)} AS SELECT * FROM ({union})")
        rej_table = f"{table}_rejects"
        if reject_sql:
            self.execute(f"CREATE OR REPLACE TABLE {quote(rej_table)} AS " + " UNION ALL ".join(reject_sql))
        else:
            self.execute(
                f"CREATE OR REPLACE TABLE {quote(rej_table)} (_source VARCHAR, line BIGINT, csv_line VARCHAR, "
                "error VARCHAR)"
            )
        rejected = int(self.scalar(f"SELECT count(*) FROM {quote(rej_table)}"))
        rows = int(self.scalar(f"SELECT count(*) FROM {quote(table)}"))
        return rows, rejected

    def _parquet_view(self, table: str, files: list[Path]) -> tuple[int, int]:
        """``table`` as a view over Parquet files, read in place: copying them into the run's database would only
        add work (at 10M order lines the copy took 4 s, a tenth of the run). The row identity is a column
        ``rowid`` (0-based, file by file in the planned order, as a table's rowid would be), hidden by
        :meth:`columns` like DuckDB's own pseudo-column. The run's files (quarantine.parquet) are written from it
        during the run; afterwards the view needs the input files where they were."""
        import pyarrow.parquet as pq

        # the view keeps absolute paths (a relative one would be read against the working directory of whoever
        # opens the database later); `_source` still gives each file as the user named it
        full = [Path(f).resolve() for f in files]
        lst = ", ".join(f"'{sql_str(f)}'" for f in full)
        offsets, total = [], 0
        for f in files:
            offsets.append(total)
            try:
                total += pq.ParquetFile(f).metadata.num_rows
            except (OSError, ValueError) as exc:
                raise BackendError(f"cannot read Parquet file '{f}': {exc}") from None
        rid = "file_row_number"
        if len(files) > 1:
            whens = " ".join(f"WHEN '{sql_str(f)}' THEN {o}" for f, o in zip(full, offsets, strict=True))
            rid = f"(CASE filename {whens} END) + file_row_number"
        source = "filename"
        if any(str(a) != str(f) for a, f in zip(full, files, strict=True)):
            names = " ".join(f"WHEN '{sql_str(a)}' THEN '{sql_str(f)}'" for a, f in zip(full, files, strict=True))
            source = f"CASE filename {names} ELSE filename END"
        cols = self.columns_of(f"SELECT * FROM read_parquet([{lst}], union_by_name = true) LIMIT 0")
        sel = ", ".join(f"{quote(c)} AS {quote(unreserved(c, cols))}" for c in cols)
        self.execute(
            f"CREATE OR REPLACE VIEW {quote(table)} AS SELECT {sel}, {source} AS _source, {rid} AS rowid "
            f"FROM read_parquet([{lst}], union_by_name = true, filename = true, file_row_number = true)"
        )
        self.execute(
            f"CREATE OR REPLACE TABLE {quote(table + '_rejects')} (_source VARCHAR, line BIGINT, csv_line VARCHAR, "
            "error VARCHAR)"
        )
        return total, 0

    def publish(self, database: DuckDBBackend) -> None:
        """Nothing to do: DuckDB is the run's database itself."""
        if database is not self:
            raise BackendError("a DuckDB engine publishes into its own database only")

    def cursor(self) -> DuckDBBackend:
        """A backend on a second connection to the same database, for work on another thread (a DuckDB
        connection is not to be shared between threads); it sees committed tables and has the same settings."""
        other = DuckDBBackend.__new__(DuckDBBackend)
        other.path = self.path
        other.con = self.con.cursor()
        return other

    def close(self) -> None:
        self.con.close()


def _read_csv_sql(group: CsvGroup, i: int) -> tuple[str, str]:
    """``read_csv`` of one CSV layout group (file names mapped back to the inputs) and its rejects query."""
    lst = ", ".join(f"'{sql_str(t)}'" for _, t in group.files)
    tag = f"{abs(hash(lst)) % 10**9}_{i}"
    opts = ", ".join(
        [
            f"delim = '{sql_str(group.delimiter)}'",
            f"header = {'true' if group.header else 'false'}",
            "auto_detect = false",
            "quote = '\"'",
            "escape = '\"'",
            "filename = true",
            "store_rejects = true",
            f"rejects_table = '_rej_err_{tag}'",
            f"rejects_scan = '_rej_scan_{tag}'",
            "columns = {" + ", ".join(f"'{sql_str(n)}': 'VARCHAR'" for n in group.columns) + "}",
        ]
    )
    case = (
        "CASE {col} " + " ".join(f"WHEN '{sql_str(t)}' THEN '{sql_str(f)}'" for f, t in group.files) + " ELSE {col} END"
    )
    sel = ", ".join(quote(c) for c in group.columns)
    select = f"SELECT {sel}, {case.format(col='filename')} AS _source FROM read_csv([{lst}], {opts})"
    reject = (
        f"SELECT {case.format(col='s.file_path')} AS _source, e.line::BIGINT AS line, "
        "any_value(e.csv_line) AS csv_line, string_agg(DISTINCT CAST(e.error_type AS VARCHAR), '; ') AS error "
        f"FROM _rej_err_{tag} e JOIN _rej_scan_{tag} s ON e.scan_id = s.scan_id AND e.file_id = s.file_id "
        "GROUP BY ALL"
    )
    return select, reject
