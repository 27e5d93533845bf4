"""SQL engines behind one protocol. DuckDB is the embedded default."""

from shopseg.backends.base import Backend
from shopseg.backends.duckdb import DuckDBBackend

__all__ = ["Backend", "DuckDBBackend"]
