"""SQL engines behind one protocol. DuckDB is the embedded default; Spark (an extra) scales past one machine.

:func:`open_engine` picks the engine a run's ``[engine]`` settings name; nothing else in shopseg asks which
engine it runs on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from shopseg.backends.base import Backend
from shopseg.backends.duckdb import DuckDBBackend
from shopseg.errors import BackendError

if TYPE_CHECKING:
    from shopseg.config import EngineConfig

__all__ = ["ENGINES", "SPARK_INSTALL_HINT", "Backend", "DuckDBBackend", "open_engine"]

#: What to do when the Spark extra is missing (the whole message names the missing module too).
SPARK_INSTALL_HINT = "Spark backend needs: pip install 'shopseg[spark]'"


def _duckdb(engine: EngineConfig, run_dir: Path, database: DuckDBBackend | None) -> Backend:
    if database is not None:
        return database
    return DuckDBBackend(run_dir / "shopseg.duckdb", memory_limit=engine.memory_limit, threads=engine.threads)


def _spark(engine: EngineConfig, run_dir: Path, database: DuckDBBackend | None) -> Backend:
    try:
        from shopseg.backends.spark import SparkBackend
    except ImportError as exc:
        missing = f" ({exc.name} is not installed)" if exc.name else ""
        raise BackendError(f"{SPARK_INSTALL_HINT}{missing}; Spark also needs Java 17 or newer") from None
    return SparkBackend(
        engine.spark_warehouse or (run_dir / "spark-tables"),
        master=engine.spark_master,
        driver_memory=engine.spark_driver_memory,
        executor_memory=engine.spark_executor_memory,
        shuffle_partitions=engine.spark_shuffle_partitions,
        conf=dict(engine.spark_conf),
    )


#: engine name -> how to open it for a run folder (given the run's DuckDB database, which DuckDB reuses)
ENGINES: dict[str, Callable[[EngineConfig, Path, DuckDBBackend | None], Backend]] = {
    "duckdb": _duckdb,
    "spark": _spark,
}


def open_engine(engine: EngineConfig, run_dir: Path, database: DuckDBBackend | None = None) -> Backend:
    """The backend that runs a run's SQL, as ``[engine]`` describes it. For DuckDB that is the run's database
    itself (``database`` when given); Spark keeps its tables under ``engine.spark_warehouse``."""
    opener = ENGINES.get(engine.name)
    if opener is None:
        raise BackendError(f"unknown engine '{engine.name}'; choose one of {sorted(ENGINES)}")
    return opener(engine, Path(run_dir), database)
