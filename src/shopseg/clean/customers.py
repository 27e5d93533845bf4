"""Cleaning of the customer table and its coupon activity: rules as data, quarantine with reasons, exact
reconciliation (input rows = clean + quarantined, per table).

Customer table (``customers_typed`` → ``customers``):

=====================  ===============================================================================
``missing_customer``   no customer id
``duplicate_customer`` the id is on an earlier row too (the first row, in input order, is kept)
``malformed_line``     CSV line with the wrong number of fields
=====================  ===============================================================================

Coupon activity (``coupons_typed`` → ``coupons``), when the workbook has an activity sheet:

=====================  ===============================================================================
``bad_date``           transaction date missing or not a date
``missing_customer``   no customer id
``unknown_customer``   the customer id is not in the (clean) customer table
``unknown_status``     a status that is neither a burned nor a subscribed value ([customers] lists them)
``duplicate``          the transaction id is on an earlier row too (without ids: an exact copy)
=====================  ===============================================================================

A missing or unparseable *attribute* does not quarantine a row: the customer stays and the value is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from shopseg.backends.duckdb import DuckDBBackend, quote
from shopseg.clean import Rule
from shopseg.config import CustomersConfig
from shopseg.errors import DataError, IntegrityError
from shopseg.ingest.customers import RAW, RAW_ACTIVITY, TYPED, TYPED_ACTIVITY, CustomersIngest

__all__ = ["ACTIVITY_RULES", "CUSTOMER_RULES", "CustomersClean", "TableClean", "activity_rules", "clean_customers"]

_FIRST = "<first row per key>"

CUSTOMER_RULES: tuple[Rule, ...] = (
    Rule("missing_customer", "no customer id", "customer_id IS NULL"),
    Rule("duplicate_customer", "customer id already on an earlier row (the first row is kept)", _FIRST),
)
MALFORMED = Rule("malformed_line", "CSV line with the wrong number of fields", "")


def _values(v: list[str]) -> str:
    return ", ".join("'" + x.lower().replace("'", "''") + "'" for x in v) or "NULL"


def activity_rules(cfg: CustomersConfig) -> list[Rule]:
    """The coupon-activity rules, in order (status values are configurable)."""
    known = _values([*cfg.burned_values, *cfg.subscribed_values])
    return [
        Rule("bad_date", "transaction date missing or not a date", "ts IS NULL"),
        Rule("missing_customer", "no customer id", "customer_id IS NULL"),
        Rule(
            "unknown_customer",
            "customer id not in the customer table",
            "customer_id NOT IN (SELECT customer_id FROM customers)",
        ),
        Rule(
            "unknown_status",
            "status is neither burned nor subscribed ([customers] burned_values / subscribed_values)",
            f"status IS NOT NULL AND status NOT IN ({known})",
            ("status",),
        ),
        Rule("duplicate", "transaction already on an earlier row (same id, or an exact copy)", _FIRST),
    ]


ACTIVITY_RULES = tuple(activity_rules(CustomersConfig()))


@dataclass
class TableClean:
    """Reconciliation of one cleaned table."""

    table: str
    input_rows: int
    clean_rows: int
    quarantined_rows: int
    reconciliation: pd.DataFrame

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_rows": self.input_rows,
            "clean_rows": self.clean_rows,
            "quarantined_rows": self.quarantined_rows,
            "by_rule": {r.code: int(r.rows) for r in self.reconciliation.itertuples() if r.code != "clean"},
        }


@dataclass
class CustomersClean:
    customers: TableClean
    activity: TableClean | None

    def as_dict(self) -> dict[str, Any]:
        out = {"customers_table": self.customers.as_dict()}
        if self.activity is not None:
            out["coupons"] = self.activity.as_dict()
        return out


def clean_customers(
    backend: DuckDBBackend, ingest: CustomersIngest, cfg: CustomersConfig | None = None
) -> CustomersClean:
    """Apply the rules; create ``customers`` (clean view), ``customers_quarantine``,
    ``customers_reconciliation`` and, with coupon activity, ``coupons``, ``coupons_quarantine`` and
    ``coupons_reconciliation``. Raises :class:`IntegrityError` when the counts do not reconcile."""
    cfg = cfg or CustomersConfig()
    attrs = [a.name for a in ingest.attributes]
    cust = _apply(
        backend,
        "customers",
        TYPED,
        RAW,
        list(CUSTOMER_RULES),
        key="customer_id",
        keep=["customer_id", *attrs],
        input_rows=ingest.input_rows,
        rejected=ingest.rejected_lines,
    )
    if cust.clean_rows == 0:
        raise DataError(
            f"no customer is left in the customer table after cleaning: all {cust.input_rows} rows were "
            f"quarantined; see the reconciliation ({cust.reconciliation.to_dict(orient='records')})"
        )
    act = None
    if ingest.activity is not None:
        a = ingest.activity
        rules = [r for r in activity_rules(cfg) if all(a.has(c) for c in r.requires)]
        keep = ["customer_id", "event_id", "ts", "status", "coupon", "burn_ts", *(c.name for c in a.categorical)]
        act = _apply(
            backend,
            "coupons",
            TYPED_ACTIVITY,
            RAW_ACTIVITY,
            rules,
            key="event_id" if a.has("id") else None,
            keep=keep,
            input_rows=a.raw_rows,
            rejected=0,
        )
    return CustomersClean(cust, act)


def _apply(
    backend: DuckDBBackend,
    name: str,
    typed: str,
    raw: str,
    rules: list[Rule],
    *,
    key: str | None,
    keep: list[str],
    input_rows: int,
    rejected: int,
) -> TableClean:
    flagged = f"{name}_flagged"
    case = " ".join(f"WHEN {r.condition} THEN '{r.code}'" for r in rules if r.condition != _FIRST)
    case = case or "WHEN false THEN NULL"
    backend.execute(f"CREATE OR REPLACE TABLE {flagged} AS SELECT *, CASE {case} ELSE NULL END AS _reason FROM {typed}")
    dup = next((r for r in rules if r.condition == _FIRST), None)
    if dup is not None:
        part = quote(key) if key else ", ".join(quote(c) for c in keep)
        backend.execute(
            f"UPDATE {flagged} SET _reason = '{dup.code}' WHERE _row_id IN (SELECT _row_id FROM ("
            f"SELECT _row_id, row_number() OVER (PARTITION BY {part} ORDER BY _row_id) AS rn FROM {flagged} "
            f"WHERE _reason IS NULL) WHERE rn > 1)"
        )
    cols = ", ".join(quote(c) for c in keep)
    backend.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {cols} FROM {flagged} WHERE _reason IS NULL")
    raw_cols = [c for c, _ in backend.columns(raw) if c != "_source"]
    raw_sel = ", ".join(f"CAST(r.{quote(c)} AS VARCHAR) AS {quote(c)}" for c in raw_cols)
    rejects = f"{raw}_rejects"
    union = (
        f" UNION ALL BY NAME SELECT NULL AS _row_id, '{MALFORMED.code}' AS reason, _source AS source, "
        f"csv_line AS raw_line FROM {rejects}"
        if backend.has_table(rejects)
        else ""
    )
    backend.execute(
        f"CREATE OR REPLACE VIEW {name}_quarantine AS SELECT f._row_id, f._reason AS reason, r._source AS source, "
        f"{raw_sel}, NULL AS raw_line FROM {flagged} f JOIN {raw} r ON r.rowid + 1 = f._row_id "
        f"WHERE f._reason IS NOT NULL{union}"
    )
    counts = dict(backend.con.execute(f"SELECT _reason, count(*) FROM {flagged} GROUP BY 1").fetchall())
    clean_rows = int(counts.pop(None, 0))
    rows = [(r.code, r.description, int(counts.get(r.code, 0))) for r in rules]
    if rejected:
        rows.append((MALFORMED.code, MALFORMED.description, rejected))
    quarantined = sum(n for _, _, n in rows)
    if clean_rows + quarantined != input_rows:
        raise IntegrityError(
            f"{name}: rows do not reconcile: {input_rows} input rows but {clean_rows} clean + {quarantined} quarantined"
        )
    recon = pd.DataFrame([*rows, ("clean", "rows used", clean_rows)], columns=["code", "description", "rows"])
    recon["share"] = recon["rows"] / max(input_rows, 1)
    backend.create_table(f"{name}_reconciliation", recon)
    return TableClean(name, input_rows, clean_rows, quarantined, recon)
