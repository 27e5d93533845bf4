"""Writing the run's files: CRM file (CSV + Parquet), recommendations, quarantine, manifest. Atomic writes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from shopseg.backends.duckdb import DuckDBBackend, quote

__all__ = ["sha256", "write_frame", "write_json", "write_run_files"]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str, allow_nan=False), encoding="utf-8")
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
    # input order (a join's output order is not fixed), then the rejected CSV lines by file and line
    backend.to_parquet(
        "SELECT * FROM quarantine ORDER BY _row_id NULLS LAST, source, raw_line", out / "quarantine.parquet"
    )
    files["quarantine"] = "quarantine.parquet"
    return files
