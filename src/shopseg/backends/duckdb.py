"""DuckDB backend: the run's database is one file, ``out/<run>/shopseg.duckdb``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from shopseg.errors import BackendError


def quote(name: str) -> str:
    """Quote an identifier for SQL."""
    return '"' + name.replace('"', '""') + '"'


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
            table: pa.Table = self.con.execute(sql, params).to_arrow_table()
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
        rows = self.con.execute(f"DESCRIBE {quote(table)}").fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

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

    def close(self) -> None:
        self.con.close()
