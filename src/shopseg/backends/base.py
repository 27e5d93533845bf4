"""The Backend protocol: what every SQL engine offers the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pyarrow as pa


class Backend(Protocol):
    """Runs SQL over named tables; the pipeline never talks to an engine directly."""

    name: str
    dialect: str

    def execute(self, sql: str, params: list[Any] | None = None) -> None: ...

    def df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame: ...

    def arrow(self, sql: str, params: list[Any] | None = None) -> pa.Table: ...

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any: ...

    def register(self, name: str, data: pa.Table | pd.DataFrame) -> None: ...

    def create_table(self, name: str, data: pa.Table | pd.DataFrame) -> None: ...

    def columns(self, table: str) -> list[tuple[str, str]]: ...

    def has_table(self, name: str) -> bool: ...

    def to_parquet(self, sql: str, path: Path) -> None: ...

    def close(self) -> None: ...
