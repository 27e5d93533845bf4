"""Shared, generic fixtures: a DuckDB backend per test, file writers and the ingest → clean calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shopseg.backends import DuckDBBackend
from shopseg.clean import CleanResult, clean_transactions
from shopseg.config import CleanConfig, InputConfig
from shopseg.ingest import IngestResult, ingest_transactions

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SAMPLE_CSV = REPO_ROOT / "src" / "shopseg" / "data" / "online_retail_sample.csv.gz"


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[DuckDBBackend]:
    """A fresh DuckDB run database in the test's tmp_path."""
    b = DuckDBBackend(tmp_path / "t.duckdb")
    yield b
    b.close()


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[..., Path]:
    """``write_file(name, content, encoding='utf-8')``: text written byte-exact (no newline translation)."""

    def write(name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content if isinstance(content, bytes) else content.encode(encoding)
        path.write_bytes(data)
        return path

    return write


@pytest.fixture
def ingest(backend: DuckDBBackend, tmp_path: Path) -> Callable[..., IngestResult]:
    """``ingest(inputs, **input_config)`` into the test's backend."""

    def run(inputs: list[str | Path] | str | Path, **cfg: Any) -> IngestResult:
        items = inputs if isinstance(inputs, list) else [inputs]
        return ingest_transactions(backend, items, InputConfig(**cfg), work=tmp_path / "work")

    return run


@pytest.fixture
def ingest_clean(
    backend: DuckDBBackend, ingest: Callable[..., IngestResult]
) -> Callable[..., tuple[IngestResult, CleanResult]]:
    """``ingest_clean(inputs, clean=CleanConfig(...), **input_config)`` → (IngestResult, CleanResult)."""

    def run(
        inputs: list[str | Path] | str | Path, clean: CleanConfig | None = None, **cfg: Any
    ) -> tuple[IngestResult, CleanResult]:
        result = ingest(inputs, **cfg)
        return result, clean_transactions(backend, result, clean or CleanConfig())

    return run


@pytest.fixture
def sample_csv() -> Path:
    """The bundled real Online Retail slice (Kaggle layout, cp1252, US dates)."""
    return SAMPLE_CSV


@pytest.fixture
def shared_data() -> Path:
    """The full data sets next to the repository; skips the test when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def test_data() -> Path:
    """Small real slices kept in tests/data."""
    return TEST_DATA
