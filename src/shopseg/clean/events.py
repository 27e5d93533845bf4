"""Cleaning rules for events (declared as data, like the order-line rules), sessions, and the reconciliation.

A row is caught by the *first* rule whose condition holds; every input row ends up either in the clean
``events`` table or in the quarantine with one reason, and :func:`clean_events` checks
``input rows = clean + quarantined`` before it returns. The quarantine of a run holds order lines and events
together; its ``source_table`` column says which (see :func:`combine_quarantine`).

Sessions: the source's session id when there is one; otherwise (and for rows whose session id is empty) a
customer's events are cut into sessions wherever the gap between two consecutive events is *longer* than
``events.session_gap_minutes`` (a gap of exactly 30 minutes stays in the session), with window functions in SQL.
"""

from __future__ import annotations

import pandas as pd

from shopseg.backends.base import Backend
from shopseg.backends.duckdb import quote
from shopseg.clean import DUPLICATE_PASS, MALFORMED_RULE, CleanResult, Rule, _mark_duplicates
from shopseg.config import EventsConfig
from shopseg.errors import IntegrityError
from shopseg.ingest import IngestResult
from shopseg.ingest.events import EVENTS_RAW, EVENTS_TYPED
from shopseg.schema import CANONICAL_EVENTS

__all__ = [
    "EVENTS_FLAGGED",
    "EVENT_RULES",
    "clean_events",
    "combine_quarantine",
    "event_rules",
    "sessionize_sql",
]

EVENTS_FLAGGED = "events_flagged"
_CANONICAL = ", ".join(CANONICAL_EVENTS)

#: The event cleaning rules, in the order they are tried.
EVENT_RULES: tuple[Rule, ...] = (
    Rule("bad_timestamp", "event time missing or not a timestamp", "ts IS NULL"),
    Rule("missing_customer", "no user / customer id", "customer_id IS NULL"),
    Rule(
        "unknown_event_type",
        "event type missing or not recognised (map it with events.event_types)",
        "event_type IS NULL",
    ),
    Rule("bad_price", "price given but not a number", "_bad_price", ("price",)),
    Rule(
        "non_positive_price",
        "purchase with a missing, zero or negative price",
        "event_type = 'purchase' AND (price IS NULL OR price <= 0)",
        ("price",),
    ),
    # exact copies have identical canonical columns, so every earlier rule treats them alike (see clean/)
    Rule("duplicate", "exact copy of an earlier event", DUPLICATE_PASS),
)


def event_rules(present: set[str]) -> list[Rule]:
    """The rules that apply when the mapped canonical columns are ``present``."""
    return [r for r in EVENT_RULES if all(c in present for c in r.requires)]


def sessionize_sql(source: str, gap_minutes: float, *, where: str = "true") -> str:
    """SELECT over ``source`` (canonical event columns + ``_row_id``) adding ``session_id`` from inactivity.

    A customer's first event opens a session; an event more than ``gap_minutes`` after the previous one opens
    the next. Sessions are numbered per customer from 1: ``session_id = customer_id || '#' || n``.
    """
    gap = f"INTERVAL {round(gap_minutes * 60_000_000)} MICROSECONDS"
    cols = ", ".join(c for c in CANONICAL_EVENTS if c != "session_id")
    order = "PARTITION BY customer_id ORDER BY ts, _row_id"
    return (
        f"SELECT {cols}, _row_id, "
        f"customer_id || '#' || CAST(sum(_new) OVER ({order} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) "
        f"AS VARCHAR) AS session_id FROM ("
        f"  SELECT *, CASE WHEN ts - lag(ts) OVER ({order}) <= {gap} THEN 0 ELSE 1 END AS _new "
        f"  FROM {source} WHERE {where}"
        ")"
    )


def clean_events(backend: Backend, ingest: IngestResult, cfg: EventsConfig | None = None) -> CleanResult:
    """Apply the event rules to ``events_typed``; create ``events`` (clean, with sessions),
    ``events_quarantine`` and ``events_reconciliation``; check the reconciliation."""
    cfg = cfg or EventsConfig()
    rules = event_rules(set(ingest.mapping.source))
    case = " ".join(f"WHEN {r.condition} THEN '{r.code}'" for r in rules if r.condition != DUPLICATE_PASS)
    backend.execute(
        f"CREATE OR REPLACE TABLE {EVENTS_FLAGGED} AS "
        f"SELECT _row_id, {_CANONICAL}, CASE {case} ELSE NULL END AS _reason FROM {EVENTS_TYPED}"
    )
    _mark_duplicates(backend, EVENTS_FLAGGED, _CANONICAL)
    counts = dict(backend.rows(f"SELECT _reason, count(*) FROM {EVENTS_FLAGGED} GROUP BY _reason"))
    clean_rows = int(counts.pop(None, 0))
    built = _make_events(backend, ingest, cfg)
    raw_cols = [c for c, _ in backend.columns(EVENTS_RAW) if c not in ("_row_id", "_source")]
    raw_sel = "".join(f"CAST(r.{quote(c)} AS VARCHAR) AS {quote(c)}, " for c in raw_cols)
    raw_nulls = "".join(f"CAST(NULL AS VARCHAR) AS {quote(c)}, " for c in raw_cols)
    backend.execute(
        "CREATE OR REPLACE VIEW events_quarantine AS "
        f"SELECT f._row_id, f._reason AS reason, r._source AS source, 'events' AS source_table, {raw_sel}"
        f"CAST(NULL AS VARCHAR) AS raw_line FROM {EVENTS_FLAGGED} f JOIN {EVENTS_RAW} r ON r.rowid + 1 = f._row_id "
        "WHERE f._reason IS NOT NULL "
        "UNION ALL "
        f"SELECT CAST(NULL AS BIGINT) AS _row_id, '{MALFORMED_RULE.code}' AS reason, _source AS source, "
        f"'events' AS source_table, {raw_nulls}csv_line AS raw_line FROM {EVENTS_RAW}_rejects"
    )
    rows = [(r.code, r.description, int(counts.get(r.code, 0))) for r in rules]
    rows.append((MALFORMED_RULE.code, MALFORMED_RULE.description, ingest.rejected_lines))
    quarantined = sum(n for _, _, n in rows)
    recon = pd.DataFrame(rows, columns=["code", "description", "rows"])
    recon = pd.concat(
        [recon, pd.DataFrame([("clean", "events used", clean_rows)], columns=recon.columns)], ignore_index=True
    )
    total = ingest.input_rows
    if clean_rows + quarantined != total:
        raise IntegrityError(
            f"events do not reconcile: {total} input rows but {clean_rows} clean + {quarantined} quarantined"
        )
    unknown = set(counts) - {r.code for r in rules}
    if unknown:
        raise IntegrityError(f"events flagged with unknown reasons {sorted(map(str, unknown))}")
    if built:  # a view over the clean rows holds them by construction; a table is counted
        in_events = int(backend.scalar("SELECT count(*) FROM events"))
        if in_events != clean_rows:
            raise IntegrityError(f"{clean_rows} clean events but {in_events} rows in the events table")
    recon["share"] = recon["rows"] / max(total, 1)
    backend.create_table("events_reconciliation", recon)
    return CleanResult(total, clean_rows, quarantined, recon, [])


def _make_events(backend: Backend, ingest: IngestResult, cfg: EventsConfig) -> bool:
    """The clean ``events``: a view when every clean row has a session id, else a table with sessions made
    from inactivity for the rows without one (returns True when a table was built)."""
    cols = ", ".join(CANONICAL_EVENTS)
    clean = f"SELECT {cols}, _row_id FROM {EVENTS_FLAGGED} WHERE _reason IS NULL"
    has_session = ingest.mapping.has("session_id")
    missing = (
        int(backend.scalar(f"SELECT count(*) FROM {EVENTS_FLAGGED} WHERE _reason IS NULL AND session_id IS NULL"))
        if has_session
        else -1
    )
    if missing == 0:
        backend.execute(f"CREATE OR REPLACE VIEW events AS SELECT {cols} FROM {EVENTS_FLAGGED} WHERE _reason IS NULL")
        return False
    gap_sessions = sessionize_sql(
        EVENTS_FLAGGED, cfg.session_gap_minutes, where="_reason IS NULL AND session_id IS NULL"
    )
    parts = [f"SELECT {cols} FROM ({gap_sessions})"]
    if has_session:
        parts.insert(0, f"SELECT {cols} FROM ({clean}) WHERE session_id IS NOT NULL")
        ingest.notes.append(
            f"events: {missing:,} clean events have no session id; their sessions are made from "
            f"{cfg.session_gap_minutes:g} minutes of inactivity"
        )
    backend.execute("CREATE OR REPLACE TABLE events AS " + " UNION ALL ".join(parts))
    return True


def combine_quarantine(backend: Backend, *, orders: bool, events: bool) -> None:
    """One ``quarantine`` view for the run: order lines and events, told apart by ``source_table``.

    The order-line quarantine (made by :func:`shopseg.clean.clean_transactions` as ``quarantine``) keeps its
    columns and becomes ``orders_quarantine``; the event rows bring their own raw columns (union by name).
    """
    views: list[tuple[str, str]] = []
    if orders:
        if not backend.has_table("orders_quarantine"):
            backend.execute("ALTER VIEW quarantine RENAME TO orders_quarantine")
        views.append(("orders_quarantine", "'orders'"))
    if events:
        views.append(("events_quarantine", "'events'"))
    if not views:
        return
    cols = {v: [c for c, _ in backend.columns(v)] for v, _ in views}
    fixed = ["_row_id", "reason", "source", "source_table"]
    raw: list[str] = []
    for v, _ in views:
        raw += [c for c in cols[v] if c not in fixed and c != "raw_line" and c not in raw]
    parts = []
    for v, tag in views:
        sel = [f"{quote(c)}" if c in cols[v] else f"CAST(NULL AS VARCHAR) AS {quote(c)}" for c in raw]
        parts.append(f"SELECT _row_id, reason, source, {tag} AS source_table, {', '.join([*sel, 'raw_line'])} FROM {v}")
    backend.execute("CREATE OR REPLACE VIEW quarantine AS " + " UNION ALL ".join(parts))


def purchases_as_transactions(backend: Backend, ingest: IngestResult | None) -> str | None:
    """For runs without order lines: a view ``transactions`` (the canonical order-line columns) over the clean
    purchase events, one unit each, the order id being the event's order id, else its session. Returns why it
    cannot be made (no events, no product column, no purchase events), or None when it was made."""
    if ingest is None:
        return "the run has neither order lines nor events"
    if not ingest.mapping.has("product_id"):
        return "the events have no product column"
    n = int(backend.scalar("SELECT count(*) FROM events WHERE event_type = 'purchase' AND product_id IS NOT NULL"))
    if n == 0:
        return "the events hold no purchase of a product"
    backend.execute(
        "CREATE OR REPLACE VIEW transactions AS "
        "SELECT customer_id, coalesce(order_id, session_id) AS order_id, product_id, "
        "CAST(NULL AS VARCHAR) AS product_name, category, 1.0 AS quantity, coalesce(price, 0.0) AS unit_price, ts, "
        "CAST(NULL AS VARCHAR) AS country FROM events WHERE event_type = 'purchase' AND product_id IS NOT NULL"
    )
    return None
