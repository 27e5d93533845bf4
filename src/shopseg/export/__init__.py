"""Writing the run's files: CRM file (CSV + Parquet), recommendations, quarantine, manifest. Atomic writes.

Exports of a finished run (PostgreSQL, CSV/Parquet/JSON, CRM layouts) are in :mod:`shopseg.export.crm` and
:mod:`shopseg.export.postgres`; :func:`export_run` picks by target.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from shopseg.backends.duckdb import DuckDBBackend, quote
from shopseg.export.crm import export_run

__all__ = ["export_run", "sha256", "write_frame", "write_json", "write_run_files"]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def _finite(o: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them, and readers choke on ``NaN``."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite(payload), indent=2, default=str, allow_nan=False), encoding="utf-8")
    tmp.replace(path)


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """CSV or Parquet by suffix, via a temp file and rename."""
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(path)


CRM_COLUMNS = (
    "customer_id",
    "segment",
    "segment_name",
    "action",
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "first_purchase",
    "last_purchase",
)


def write_run_files(backend: DuckDBBackend, out: Path) -> dict[str, str]:
    """segments.csv/.parquet, recommendations.parquet, quarantine.parquet from the run's tables."""
    seg_cols = [c for c, _ in backend.columns("segments")]
    extra = [c for c in seg_cols if c not in CRM_COLUMNS]
    cols = [c for c in CRM_COLUMNS if c in seg_cols] + extra
    select = f"SELECT {', '.join(quote(c) for c in cols)} FROM segments ORDER BY customer_id"
    backend.to_csv(select, out / "segments.csv")
    backend.to_parquet(select, out / "segments.parquet")
    files = {"segments": "segments.csv", "segments_parquet": "segments.parquet"}
    if backend.has_table("recommendations"):
        backend.to_parquet("SELECT * FROM recommendations ORDER BY customer_id, rank", out / "recommendations.parquet")
        files["recommendations"] = "recommendations.parquet"
    rec_tables = (
        ("similar_items", "product_id, rank"),
        ("bundles", "lift DESC, orders DESC, product_a, product_b"),
        ("segment_products", "segment, rank_by, rank"),  # per-segment banner products
    )
    for table, order in rec_tables:
        if backend.has_table(table):
            backend.to_parquet(f"SELECT * FROM {table} ORDER BY {order}", out / f"{table}.parquet")
            files[table] = f"{table}.parquet"
    # by source (orders, events, customers …), input order (a join's output order is not fixed), then the
    # rejected CSV lines by file and line
    by_source = "source_table, " if any(c == "source_table" for c, _ in backend.columns("quarantine")) else ""
    backend.to_parquet(
        f"SELECT * FROM quarantine ORDER BY {by_source}_row_id NULLS LAST, source, raw_line", out / "quarantine.parquet"
    )
    files["quarantine"] = "quarantine.parquet"
    return files
