"""Cleaning rules declared as data, applied in SQL, with an exact reconciliation.

Each rule has a reason code, a description and a SQL condition over the typed canonical columns. A row is
caught by the *first* rule whose condition holds, so every input row ends up in exactly one place: the clean
``transactions`` table, or ``quarantine`` with one reason. ``reconciliation`` counts rows per rule, and
:func:`clean_transactions` checks ``input rows = clean + quarantined`` before it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from shopseg.backends.base import Backend
from shopseg.backends.duckdb import quote
from shopseg.config import CleanConfig
from shopseg.errors import IntegrityError
from shopseg.ingest import RAW, TYPED, IngestResult

__all__ = ["RULES", "CleanResult", "Rule", "clean_transactions", "rules_for"]

FLAGGED = "transactions_flagged"


@dataclass(frozen=True)
class Rule:
    """One cleaning rule: rows where ``condition`` holds are quarantined with ``code``."""

    code: str
    description: str
    condition: str
    requires: tuple[str, ...] = ()


#: condition marker of the duplicate rule, which runs as its own pass (see :func:`_mark_duplicates`)
DUPLICATE_PASS = "<duplicate pass>"
CANONICAL = "customer_id, order_id, product_id, product_name, category, quantity, unit_price, ts, country"
#: the flagged lines the returns pass matches to earlier purchases
RETURN_LINES = "_reason = 'cancellation' AND quantity < 0 AND product_id IS NOT NULL"


def _in_list(values: list[str]) -> str:
    return ", ".join("'" + v.upper().replace("'", "''") + "'" for v in values) or "NULL"


def rules_for(cfg: CleanConfig) -> list[Rule]:
    """The ordered rule list for a configuration (non-product codes are configurable)."""
    like = " OR ".join(
        f"lower(product_id) LIKE '{p.lower().replace(chr(39), chr(39) * 2)}'" for p in cfg.non_product_patterns
    )
    non_product = f"upper(product_id) IN ({_in_list(cfg.non_product_codes)})" + (f" OR {like}" if like else "")
    return [
        Rule("bad_date", "order date missing or not a date", "ts IS NULL"),
        Rule(
            "bad_number",
            "quantity or price missing or not a number",
            "quantity IS NULL OR unit_price IS NULL",
        ),
        Rule("missing_customer", "no customer id", "customer_id IS NULL"),
        Rule(
            "cancellation",
            "cancellation invoice (order id 'C' + digits)",
            "regexp_matches(order_id, '^[Cc][0-9]')",
            ("order_id",),
        ),
        Rule(
            "adjustment",
            "adjustment invoice (order id 'A' + digits, e.g. bad debt)",
            "regexp_matches(order_id, '^[Aa][0-9]')",
            ("order_id",),
        ),
        Rule(
            "non_product",
            "not a product (postage, fees, manual and gift-voucher lines)",
            non_product,
            ("product_id",),
        ),
        Rule("non_positive_quantity", "quantity zero or negative (returns, stock adjustments)", "quantity <= 0"),
        Rule("non_positive_price", "unit price zero or negative", "unit_price <= 0"),
        # Exact copies have identical canonical columns, so every earlier rule treats them alike: finding
        # duplicates among the rows still clean is the same as applying this rule last, and much cheaper.
        Rule("duplicate", "exact copy of an earlier line", DUPLICATE_PASS),
    ]


RULES = rules_for(CleanConfig())
OUTLIER_RULE = Rule("outlier_customer", "customer's spend is an outlier (clean.outliers = remove)", "_outlier")
MALFORMED_RULE = Rule("malformed_line", "CSV line with the wrong number of fields", "")


@dataclass
class CleanResult:
    input_rows: int
    clean_rows: int
    quarantined_rows: int
    reconciliation: pd.DataFrame
    outlier_customers: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_rows": self.input_rows,
            "clean_rows": self.clean_rows,
            "quarantined_rows": self.quarantined_rows,
            "by_rule": {r.code: int(r.rows) for r in self.reconciliation.itertuples() if r.code != "clean"},
        }


def clean_transactions(backend: Backend, ingest: IngestResult, cfg: CleanConfig | None = None) -> CleanResult:
    """Apply the rules; create ``transactions`` (clean), ``quarantine``, ``reconciliation`` and ``returns``."""
    cfg = cfg or CleanConfig()
    present = set(ingest.mapping.source)
    rules = [r for r in rules_for(cfg) if all(c in present for c in r.requires)]
    case = " ".join(f"WHEN {r.condition} THEN '{r.code}'" for r in rules if r.condition != DUPLICATE_PASS)
    # every typed column but the source file name, which the quarantine takes from the raw rows: a file path
    # repeated on every line cost a seventh of this table's write at 10M lines
    cols = ", ".join(quote(c) for c, _ in backend.columns(TYPED) if c != "_source")
    backend.execute(
        f"CREATE OR REPLACE TABLE {FLAGGED} AS SELECT {cols}, CASE {case} ELSE NULL END AS _reason FROM {TYPED}"
    )
    _mark_duplicates(backend)
    outliers = _outliers(backend, cfg)
    if cfg.outliers == "remove" and outliers:
        backend.execute("CREATE OR REPLACE TEMP TABLE _outl AS SELECT unnest(?) AS customer_id", [outliers])
        backend.execute(
            f"UPDATE {FLAGGED} SET _reason = '{OUTLIER_RULE.code}' "
            "WHERE _reason IS NULL AND customer_id IN (SELECT customer_id FROM _outl)"
        )
        rules.append(OUTLIER_RULE)
    backend.execute(
        f"CREATE OR REPLACE VIEW transactions AS SELECT customer_id, order_id, product_id, product_name, category, "
        f"quantity, unit_price, ts, country FROM {FLAGGED} WHERE _reason IS NULL"
    )
    raw_cols = [c for c, _ in backend.columns(RAW) if c not in ("_row_id", "_source")]
    raw_sel = ", ".join(f"CAST(r.{quote(c)} AS VARCHAR) AS {quote(c)}" for c in raw_cols)
    raw_nulls = "".join(f"CAST(NULL AS VARCHAR) AS {quote(c)}, " for c in raw_cols)
    backend.execute(
        f"CREATE OR REPLACE VIEW quarantine AS "
        f"SELECT f._row_id, f._reason AS reason, r._source AS source, {raw_sel}, CAST(NULL AS VARCHAR) AS raw_line "
        f"FROM {FLAGGED} f JOIN {RAW} r ON r.rowid + 1 = f._row_id WHERE f._reason IS NOT NULL "
        f"UNION ALL "
        f"SELECT CAST(NULL AS BIGINT) AS _row_id, '{MALFORMED_RULE.code}' AS reason, _source AS source, {raw_nulls}"
        f"csv_line AS raw_line FROM {RAW}_rejects"
    )
    counts = dict(backend.rows(f"SELECT _reason, count(*) FROM {FLAGGED} GROUP BY _reason"))
    clean_rows = int(counts.pop(None, 0))
    rows = [(r.code, r.description, int(counts.get(r.code, 0))) for r in rules]
    rows.append((MALFORMED_RULE.code, MALFORMED_RULE.description, ingest.rejected_lines))
    quarantined = sum(n for _, _, n in rows)
    recon = pd.DataFrame(rows, columns=["code", "description", "rows"])
    recon = pd.concat(
        [recon, pd.DataFrame([("clean", "rows used", clean_rows)], columns=recon.columns)], ignore_index=True
    )
    total = ingest.input_rows
    if clean_rows + quarantined != total:
        raise IntegrityError(
            f"rows do not reconcile: {total} input rows but {clean_rows} clean + {quarantined} quarantined"
        )
    unknown = set(counts) - {r.code for r in rules}
    if unknown:
        raise IntegrityError(f"rows flagged with unknown reasons {sorted(map(str, unknown))}")
    recon["share"] = recon["rows"] / max(total, 1)
    backend.create_table("reconciliation", recon)
    _returns(backend)
    return CleanResult(total, clean_rows, quarantined, recon, outliers)


def _mark_duplicates(backend: Backend, table: str = FLAGGED, columns: str = CANONICAL) -> None:
    """Quarantine exact copies of an earlier clean line (the first copy stays). Candidate groups are found by
    hashing the canonical columns; the exact comparison runs on the candidates only. ``table``/``columns``
    default to order lines; events pass theirs."""
    backend.execute(
        "CREATE OR REPLACE TEMP TABLE _dups AS "
        f"WITH cand AS (SELECT hash({columns}) AS h FROM {table} WHERE _reason IS NULL "
        "               GROUP BY 1 HAVING count(*) > 1) "
        "SELECT _row_id FROM ("
        f"  SELECT _row_id, row_number() OVER (PARTITION BY {columns} ORDER BY _row_id) AS rn FROM {table} "
        f"  WHERE _reason IS NULL AND hash({columns}) IN (SELECT h FROM cand)"
        ") WHERE rn > 1"
    )
    backend.execute(f"UPDATE {table} SET _reason = 'duplicate' WHERE _row_id IN (SELECT _row_id FROM _dups)")
    backend.execute("DROP TABLE _dups")


def _outliers(backend: Backend, cfg: CleanConfig) -> list[str]:
    """Customers whose log spend lies far above the rest (robust: MAD or IQR)."""
    if cfg.outliers == "off":
        return []
    spend = (
        f"SELECT customer_id, ln(1 + sum(quantity * unit_price)) AS s FROM {FLAGGED} "
        "WHERE _reason IS NULL GROUP BY customer_id"
    )
    t = cfg.outlier_threshold
    if cfg.outlier_method == "mad":
        sql = (
            f"WITH s AS ({spend}), m AS (SELECT median(s) AS med FROM s), "
            "d AS (SELECT median(abs(s.s - m.med)) AS mad FROM s, m) "
            f"SELECT customer_id FROM s, m, d WHERE d.mad > 0 AND (s.s - m.med) / (1.4826 * d.mad) > {t} "
            "ORDER BY customer_id"
        )
    else:
        sql = (
            f"WITH s AS ({spend}), q AS (SELECT quantile_cont(s, 0.25) AS q1, quantile_cont(s, 0.75) AS q3 FROM s) "
            f"SELECT customer_id FROM s, q WHERE s.s > q.q3 + {t} * (q.q3 - q.q1) ORDER BY customer_id"
        )
    return [str(r[0]) for r in backend.rows(sql)]


def _returns(backend: Backend) -> None:
    """Cancellation lines matched to the same customer's earlier purchase of the same product."""
    backend.execute(
        f"CREATE OR REPLACE TABLE returns AS "
        f"WITH c AS (SELECT _row_id, customer_id, product_id, ts, -quantity AS quantity, unit_price "
        f"           FROM {FLAGGED} WHERE {RETURN_LINES}),"
        f" k AS (SELECT DISTINCT customer_id, product_id FROM c),"
        f" p AS (SELECT t.customer_id, t.product_id, min(t.ts) AS first_ts, sum(t.quantity) AS bought "
        f"       FROM transactions t JOIN k ON t.customer_id = k.customer_id AND t.product_id = k.product_id "
        f"       GROUP BY ALL) "
        f"SELECT c._row_id, c.customer_id, c.product_id, c.ts, c.quantity, c.unit_price, "
        f"       coalesce(p.first_ts <= c.ts, false) AS matched "
        f"FROM c LEFT JOIN p USING (customer_id, product_id) ORDER BY c._row_id"
    )
