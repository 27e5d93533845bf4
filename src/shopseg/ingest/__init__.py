"""Ingest: read order-line exports (CSV, Parquet, Excel; files, folders, globs) into canonical tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shopseg.backends.base import Backend
from shopseg.backends.duckdb import quote
from shopseg.config import InputConfig
from shopseg.ingest.mapping import (
    ColumnMapping,
    check_not_empty,
    detect_date_format,
    detect_decimal_comma,
    guess_headerless,
    id_expr,
    map_columns,
    number_expr,
    text_expr,
    ts_expr,
)
from shopseg.ingest.readers import expand_inputs, load_raw

__all__ = ["IngestResult", "expand_inputs", "ingest_transactions"]

log = logging.getLogger(__name__)

RAW = "raw_transactions"
TYPED = "transactions_typed"


@dataclass
class IngestResult:
    """Facts about what was read; the data itself is in the backend's tables."""

    files: list[Path]
    file_facts: list[dict[str, Any]]
    raw_rows: int
    rejected_lines: int
    mapping: ColumnMapping
    notes: list[str] = field(default_factory=list)

    @property
    def input_rows(self) -> int:
        """Every data row in the input: loaded rows plus malformed lines that could not be split into fields."""
        return self.raw_rows + self.rejected_lines

    @property
    def has_products(self) -> bool:
        return self.mapping.has("product_id")

    def summary(self) -> dict[str, Any]:
        return {
            "files": self.file_facts,
            "input_rows": self.input_rows,
            "raw_rows": self.raw_rows,
            "malformed_lines": self.rejected_lines,
            "columns": self.mapping.source,
            "mapped_how": self.mapping.how,
            "date_format": self.mapping.date_format,
            "decimal_comma": self.mapping.decimal_comma,
            "notes": self.notes + self.mapping.notes,
        }


def ingest_transactions(
    backend: Backend,
    inputs: Sequence[str | Path],
    cfg: InputConfig | None = None,
    *,
    work: Path | None = None,
) -> IngestResult:
    """Read order lines into ``raw_transactions`` and expose the typed canonical view ``transactions_typed``.

    The view has the canonical columns plus ``_row_id`` and ``_source``; unparseable values are NULL there and
    the cleaning step quarantines their rows.
    """
    cfg = cfg or InputConfig()
    files = expand_inputs(inputs)
    work = work or Path(".shopseg-work")
    header = None if cfg.header else False
    load = load_raw(
        backend,
        files,
        RAW,
        work=work,
        encoding=cfg.encoding,
        delimiter=cfg.delimiter,
        header=header if cfg.names is None else False,
        names=cfg.names,
        sheet=cfg.sheet,
    )
    notes = list(load.notes)
    explicit = dict(cfg.columns)
    guessed: dict[str, str] = {}
    headerless = all(c.startswith("column") and c[6:].isdigit() for c in load.columns)
    if headerless and cfg.names is None:
        guessed = guess_headerless(backend, RAW, load.columns)
        for canon, src in guessed.items():
            explicit.setdefault(canon, src)
        notes.append(
            "columns guessed from their values: "
            + ", ".join(f"{src} -> {c}" for c, src in guessed.items())
            + ". Name them with --names if this is wrong."
        )
    mapping = map_columns(load.columns, explicit)
    for canon in guessed:
        if canon not in cfg.columns:
            mapping.how[canon] = "guessed"
    for canon, how in mapping.how.items():
        if how == "automatic":
            log.info("column %r mapped to %s", mapping.source[canon], canon)
    check_not_empty(backend, RAW, mapping)
    types = dict(backend.columns(RAW))
    ts_col, ts_type = mapping.source["ts"], types[mapping.source["ts"]]
    if cfg.date_format and not ts_type.upper().startswith(("TIMESTAMP", "DATE")):
        mapping.date_format = cfg.date_format
    else:
        mapping.date_format = detect_date_format(backend, RAW, ts_col, ts_type)
    num_cols = [mapping.source[c] for c in ("quantity", "unit_price", "amount") if mapping.has(c)]
    text_num = [c for c in num_cols if types[c].upper() == "VARCHAR"]
    mapping.decimal_comma = detect_decimal_comma(backend, RAW, text_num)
    if not mapping.has("product_id"):
        notes.append("no product column: product features and recommendations are skipped")
    if not mapping.has("order_id"):
        notes.append("no order id column: each customer's lines at one timestamp form one order")
    if not mapping.has("unit_price"):
        notes.append(f"no unit price column: unit price = line total ('{mapping.source['amount']}') / quantity")
    backend.execute(f"CREATE OR REPLACE VIEW {TYPED} AS " + typed_sql(mapping, types))
    return IngestResult(files, load.files, load.rows, load.rejected, mapping, notes)


def typed_sql(m: ColumnMapping, types: dict[str, str]) -> str:
    """SELECT over ``raw_transactions`` giving the canonical typed columns and parse-failure flags."""
    s = m.source

    def num(c: str) -> str:
        return number_expr(s[c], types[s[c]], m.decimal_comma)

    cust = id_expr(s["customer_id"], types[s["customer_id"]])
    ts = ts_expr(s["ts"], types[s["ts"]], m.date_format)
    qty = num("quantity") if m.has("quantity") else "1.0"
    if m.has("unit_price"):
        price = num("unit_price")
    else:
        amount = num("amount")
        price = f"(CASE WHEN ({qty}) = 0 THEN 0.0 ELSE ({amount}) / ({qty}) END)"
    order = (
        id_expr(s["order_id"], types[s["order_id"]])
        if m.has("order_id")
        else f"(({cust}) || '@' || CAST(({ts}) AS VARCHAR))"
    )
    cols = {
        "customer_id": cust,
        "order_id": order,
        "product_id": id_expr(s["product_id"], types[s["product_id"]])
        if m.has("product_id")
        else "CAST(NULL AS VARCHAR)",
        "product_name": text_expr(s["product_name"]) if m.has("product_name") else "CAST(NULL AS VARCHAR)",
        "category": text_expr(s["category"]) if m.has("category") else "CAST(NULL AS VARCHAR)",
        "quantity": qty,
        "unit_price": price,
        "ts": ts,
        "country": text_expr(s["country"]) if m.has("country") else "CAST(NULL AS VARCHAR)",
    }
    select = ", ".join(f"{expr} AS {name}" for name, expr in cols.items())
    return f"SELECT rowid + 1 AS _row_id, _source, {select} FROM {quote(RAW)}"
