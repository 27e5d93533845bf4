"""Ingest event logs (clickstreams) into the canonical ``events`` table, and tell input files apart by role.

The same readers (CSV sniffing, Parquet, Excel, folders, globs) and the same mapping machinery as order lines
are used, with the event columns of :data:`shopseg.schema.EVENT_COLUMNS`: REES46 (``event_time, event_type,
product_id, category_id, category_code, brand, price, user_id, user_session``), RetailRocket (``timestamp``
in epoch ms, ``visitorid, event, itemid, transactionid``) and GA-style exports (``event_timestamp`` in epoch
µs, ``event_name, user_pseudo_id, ga_session_id, item_id, item_brand, item_category, device_category``).

Event type names are mapped to the canonical types (``addtocart`` → ``cart``, ``transaction`` →
``purchase`` …, see :data:`shopseg.schema.EVENT_TYPE_SYNONYMS`); types that map to nothing become NULL and
the cleaning step quarantines their rows with the reason ``unknown_event_type``.
"""

from __future__ import annotations

import codecs
import csv
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from shopseg.backends.base import Backend
from shopseg.backends.duckdb import quote
from shopseg.config import EventsConfig, InputConfig
from shopseg.errors import DataError
from shopseg.ingest import IngestResult
from shopseg.ingest.mapping import (
    ColumnMapping,
    detect_date_format,
    detect_decimal_comma,
    id_expr,
    map_columns,
    number_expr,
    text_expr,
    ts_expr,
)
from shopseg.ingest.readers import (
    _detect_delimiter,
    _looks_like_value,
    _open_binary,
    expand_inputs,
    file_kind,
    load_raw,
    read_excel,
)
from shopseg.schema import EVENT_COLUMNS, EVENT_TYPE_SYNONYMS, EVENT_TYPES, source_role

__all__ = [
    "EVENTS_RAW",
    "EVENTS_TYPED",
    "ROLES",
    "event_type_map",
    "file_columns",
    "ingest_events",
    "normalize_event_type",
    "split_inputs",
]

log = logging.getLogger(__name__)

EVENTS_RAW = "raw_events"
EVENTS_TYPED = "events_typed"
#: The input roles a file can have, in the order the pipeline reads them.
ROLES: tuple[str, ...] = ("orders", "events", "customers")


# ------------------------------------------------------------------------------------------ roles of inputs


def file_columns(path: Path, cfg: EventsConfig | InputConfig | None = None) -> list[str] | None:
    """The column names of one file, read from its header only (None when it has no header line)."""
    kind = file_kind(path)
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if kind == "excel":
        sheet = cfg.sheet if cfg is not None else None
        return list(read_excel(path, sheet).column_names)
    return _csv_header(path, cfg.encoding if cfg is not None else None, cfg.delimiter if cfg is not None else None)


def _csv_header(path: Path, encoding: str | None, delimiter: str | None) -> list[str] | None:
    """The header of a CSV file from its first 64 KiB only (a big file is not read twice to sort it)."""
    with _open_binary(path) as fh:
        raw = fh.read(64 * 1024)
    enc = encoding or ("utf-16" if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8")
    try:
        text = raw.decode(enc, errors="replace")
    except LookupError:
        return None  # an unknown encoding name: reading the file as orders reports it
    lines = [ln for ln in text.lstrip("\ufeff").splitlines()[:20] if ln.strip()]
    if len(lines) > 1 and len(raw) == 64 * 1024:
        lines = lines[:-1]
    if not lines:
        return None
    delim = delimiter or _detect_delimiter(lines)
    first = lines[0].split() if delim == "\\s+" else next(csv.reader([lines[0]], delimiter=delim))
    if all(_looks_like_value(t) for t in first if t.strip()):
        return None
    return [c.strip() for c in first]


def split_inputs(inputs: Sequence[str | Path], cfg: InputConfig | None = None) -> dict[str, list[str]]:
    """Sort positional inputs by role ('orders', 'events', 'customers') from their column names.

    The rule is :func:`shopseg.schema.source_role`. Files without a header line, and every file when column
    names are given by hand (``--names``) or ``--no-header`` is set, are orders, as before roles existed.
    """
    roles: dict[str, list[str]] = {r: [] for r in ROLES}
    if not inputs:
        return roles
    cfg = cfg or InputConfig()
    if cfg.names is not None or not cfg.header:
        roles["orders"] = [str(i) for i in inputs]
        return roles
    for f in expand_inputs(inputs):
        cols = file_columns(f, cfg)
        role = "orders" if cols is None else source_role(cols)
        if role == "orders" and cfg.sheet is None and file_kind(f) == "excel":
            from shopseg.ingest.customers import is_customer_workbook

            if is_customer_workbook(f):  # a customer sheet and no prices anywhere (e.g. the coupon workbook)
                role = "customers"
        if role != "orders":
            log.info("%s read as %s (by its columns)", f, role)
        roles[role].append(str(f))
    return roles


# ------------------------------------------------------------------------------------------ event types


def normalize_event_type(value: str) -> str:
    """'Add To Cart' / 'add-to-cart' / 'ADD_TO_CART' → 'add_to_cart' (lower case, runs of space . - → _)."""
    return re.sub(r"[\s.\-]+", "_", str(value).strip().lower())


def event_type_map(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Normalised source spelling → canonical event type: the built-in synonyms plus ``extra`` (which wins)."""
    mapping = {normalize_event_type(k): v for k, v in EVENT_TYPE_SYNONYMS.items()}
    mapping.update({t: t for t in EVENT_TYPES})
    for k, v in (extra or {}).items():
        mapping[normalize_event_type(k)] = v
    return mapping


def _event_type_sql(backend: Backend, column: str, extra: dict[str, str], notes: list[str]) -> str:
    """A CASE over the distinct raw values actually present (a handful), so no string function runs per row."""
    q = quote(column)
    rows = backend.rows(
        f"SELECT CAST({q} AS VARCHAR) AS v, count(*) FROM {quote(EVENTS_RAW)} GROUP BY 1 ORDER BY 2 DESC"
    )
    mapping = event_type_map(extra)
    whens: list[str] = []
    unknown: list[tuple[str, int]] = []
    for value, n in rows:
        if value is None:
            continue
        canon = mapping.get(normalize_event_type(value))
        if canon is None:
            unknown.append((str(value), int(n)))
            continue
        lit = str(value).replace("'", "''")
        whens.append(f"WHEN '{lit}' THEN '{canon}'")
        if normalize_event_type(value) != canon:
            log.info("event type %r read as %s", value, canon)
    if unknown:
        shown = ", ".join(f"'{v}' ({n:,} rows)" for v, n in unknown[:8]) + (" …" if len(unknown) > 8 else "")
        notes.append(
            f"event types not recognised: {shown}; their rows are quarantined (unknown_event_type). Map them "
            "with [events] event_types = {name = 'view'} (view, cart, remove_from_cart, purchase, banner_view, "
            "banner_click)"
        )
    if not whens:
        return "CAST(NULL AS VARCHAR)"
    return f"CASE CAST({q} AS VARCHAR) {' '.join(whens)} ELSE NULL END"


# ------------------------------------------------------------------------------------------ ingest


def ingest_events(
    backend: Backend,
    inputs: Sequence[str | Path],
    cfg: EventsConfig | None = None,
    *,
    work: Path | None = None,
) -> IngestResult:
    """Read event logs into ``raw_events`` and expose the typed canonical view ``events_typed``.

    The view has the canonical event columns (:data:`shopseg.schema.CANONICAL_EVENTS`) plus ``_row_id``,
    ``_source`` and ``_bad_price`` (a price was given but is not a number); values that do not parse are
    NULL and the cleaning step (:func:`shopseg.clean.events.clean_events`) quarantines their rows.
    """
    cfg = cfg or EventsConfig()
    files = expand_inputs(inputs)
    work = work or Path(".shopseg-work")
    # Parquet-only inputs are read in place by the DuckDB backend (a view; see DuckDBBackend.load_raw)
    load = load_raw(
        backend,
        files,
        EVENTS_RAW,
        work=work,
        encoding=cfg.encoding,
        delimiter=cfg.delimiter,
        sheet=cfg.sheet,
    )
    notes = [f"events: {n}" for n in load.notes]
    mapping = map_columns(
        load.columns,
        dict(cfg.columns),
        columns=EVENT_COLUMNS,
        required=("customer_id", "ts", "event_type"),
        section="events",
    )
    for canon, how in mapping.how.items():
        if how == "automatic":
            log.info("event column %r mapped to %s", mapping.source[canon], canon)
    src = mapping.source["customer_id"]
    if not _any_present(backend, src):
        raise DataError(
            f"no user ids at all in the events: column '{src}' (mapped to customer_id) is empty in every row. If "
            "another column identifies users, set it with [events.columns] customer_id = 'NAME'"
        )
    types = dict(backend.columns(EVENTS_RAW))
    ts_col, ts_type = mapping.source["ts"], types[mapping.source["ts"]]
    if cfg.date_format and not ts_type.upper().startswith(("TIMESTAMP", "DATE")):
        mapping.date_format = cfg.date_format
    else:
        mapping.date_format = detect_date_format(backend, EVENTS_RAW, ts_col, ts_type)
    if mapping.has("price") and types[mapping.source["price"]].upper() == "VARCHAR":
        mapping.decimal_comma = detect_decimal_comma(backend, EVENTS_RAW, [mapping.source["price"]])
    etype = _event_type_sql(backend, mapping.source["event_type"], dict(cfg.event_types), notes)
    if not mapping.has("session_id"):
        notes.append(
            f"events have no session id column: sessions are made from {cfg.session_gap_minutes:g} minutes of "
            "inactivity (events.session_gap_minutes)"
        )
    for name, why in (
        ("price", "price features (spend, premium index) are skipped"),
        ("product_id", "product features and recommendations from purchase events are skipped"),
        ("device", "the mobile share and device insights are skipped"),
    ):
        if not mapping.has(name):
            notes.append(f"events have no {name} column: {why}")
    backend.execute(f"CREATE OR REPLACE VIEW {EVENTS_TYPED} AS " + typed_events_sql(mapping, types, etype))
    return IngestResult(files, load.files, load.rows, load.rejected, mapping, notes)


def _any_present(backend: Backend, column: str) -> bool:
    """Whether any row has a non-empty value in ``column`` (stops at the first)."""
    q = quote(column)
    n = backend.scalar(
        f"SELECT count(*) FROM (SELECT 1 FROM {quote(EVENTS_RAW)} "
        f"WHERE NULLIF(trim(CAST({q} AS VARCHAR)), '') IS NOT NULL LIMIT 1)"
    )
    return bool(n)


def typed_events_sql(m: ColumnMapping, types: dict[str, str], event_type: str) -> str:
    """SELECT over ``raw_events`` giving the canonical typed event columns."""
    s = m.source

    def ident(c: str) -> str:
        return id_expr(s[c], types[s[c]]) if m.has(c) else "CAST(NULL AS VARCHAR)"

    def text(c: str) -> str:
        return text_expr(s[c]) if m.has(c) else "CAST(NULL AS VARCHAR)"

    if m.has("category") and m.has("category_id"):
        category = f"coalesce({text('category')}, {ident('category_id')})"
    elif m.has("category_id"):
        category = ident("category_id")
    else:
        category = text("category")
    if m.has("price"):
        price = number_expr(s["price"], types[s["price"]], m.decimal_comma)
        bad_price = f"(({price}) IS NULL AND NULLIF(trim(CAST({quote(s['price'])} AS VARCHAR)), '') IS NOT NULL)"
    else:
        price, bad_price = "CAST(NULL AS DOUBLE)", "false"
    cols = {
        "customer_id": ident("customer_id"),
        "session_id": ident("session_id"),
        "ts": ts_expr(s["ts"], types[s["ts"]], m.date_format),
        "event_type": event_type,
        "product_id": ident("product_id"),
        "category": category,
        "brand": text("brand"),
        "price": price,
        "device": text("device"),
        "order_id": ident("order_id"),
        "banner_slot": text("banner_slot"),
        "_bad_price": bad_price,
    }
    select = ", ".join(f"{expr} AS {name}" for name, expr in cols.items())
    return f"SELECT rowid + 1 AS _row_id, _source, {select} FROM {quote(EVENTS_RAW)}"
