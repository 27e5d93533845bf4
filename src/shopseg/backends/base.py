"""The Backend protocol: what every SQL engine offers the pipeline.

SQL given to a backend is written in DuckDB's dialect (see :mod:`shopseg.backends.dialect`); a backend on
another engine translates it. Column types are reported in DuckDB's names (``VARCHAR``, ``BIGINT``,
``DOUBLE``, ``TIMESTAMP`` …) whatever the engine, so that code choosing SQL by a column's type works on all.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa


@dataclass
class CsvGroup:
    """CSV files that share one layout, as the readers sniffed them: read them with these settings."""

    delimiter: str  # one character (runs of spaces were transcoded to tabs)
    header: bool  # skip each file's first line
    columns: tuple[str, ...]  # the layout: one name per field, every value read as text
    files: list[tuple[Path, Path]]  # (input file, file to read: the input or its UTF-8 transcoding)


#: column names the raw tables use themselves (compared case-insensitively, as SQL identifiers are)
RESERVED_COLUMNS = frozenset({"rowid", "_source", "_row_id"})


def unreserved(name: str, taken: Collection[str] = ()) -> str:
    """``name``, or with ``_`` appended until it is neither a name the raw tables use themselves (``rowid``,
    ``_source``, ``_row_id``) nor in ``taken``: an input column called ``rowid`` would otherwise hide the row
    identity (a database export's own row number often has that name)."""
    out = name
    while out.lower() in RESERVED_COLUMNS or (out != name and out in taken):
        out += "_"
    return out


@dataclass
class RawPlan:
    """What to load into a raw table, in input order: Parquet files, then CSV groups, then Excel sheets.

    A backend loads the rows of every part into one table (columns united by name, plus ``_source``: the input
    file), in this order; the row identity is the engine's ``rowid`` (0-based, in input order). CSV lines that
    cannot be split into the layout's fields go to ``<table>_rejects`` (``_source, line, csv_line, error``).
    """

    parquet: list[Path] = field(default_factory=list)
    csv: list[CsvGroup] = field(default_factory=list)
    excel: list[tuple[Path, pa.Table]] = field(default_factory=list)
    as_text: bool = False  # every column as text (Parquet read next to CSV/Excel)

    def inputs(self) -> list[Path]:
        """The input files in row order."""
        return list(self.parquet) + [f for g in self.csv for f, _ in g.files] + [f for f, _ in self.excel]


class Backend(Protocol):
    """Runs SQL over named tables; the pipeline never talks to an engine directly."""

    name: str
    dialect: str

    def execute(self, sql: str, params: list[Any] | None = None) -> None: ...

    def df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame: ...

    def arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table: ...

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any: ...

    def rows(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]: ...

    def register(self, name: str, data: pa.Table | pd.DataFrame) -> None: ...

    def create_table(self, name: str, data: pa.Table | pd.DataFrame) -> None: ...

    def columns(self, table: str) -> list[tuple[str, str]]: ...

    def columns_of(self, sql: str) -> list[str]: ...

    def has_table(self, name: str) -> bool: ...

    def load_raw(self, table: str, plan: RawPlan) -> tuple[int, int]: ...

    def to_parquet(self, sql: str, path: Path) -> None: ...

    def to_csv(self, sql: str, path: Path) -> None: ...

    def publish(self, database: Any) -> None:
        """Make the engine's tables and views readable in the run's DuckDB database (a no-op for DuckDB)."""
        ...

    def close(self) -> None: ...
