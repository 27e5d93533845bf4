"""Exports of a finished run for the systems that act on segments: files (CSV, Parquet, JSON), two CRM-ready
CSV layouts, and PostgreSQL (:mod:`shopseg.export.postgres`).

Every export reads the run read-only and applies the same two privacy options:

* **pseudonymised customer ids** (``pseudonymise=True``): each id becomes ``sha256(salt || id)`` in hex. The
  salt is a secret given by option or environment variable; it is never written anywhere. Rows are then ordered
  by the pseudonym, so the order of the original ids does not leak, and e-mail addresses are left out.
* **a minimum segment size** (``min_segment_size``): segments with fewer customers are not exported at all
  (their customers, profile and recommendations are left out); the report lists them.

CRM layouts (one row per customer):

``crm-tags`` (Mailchimp-style audience import with tags)
    ``Email Address``, ``External ID``, ``Tags`` — tags ``shopseg-segment-<id>`` and the segment name as a slug,
    comma-separated in one quoted field.
``crm-properties`` (HubSpot-style contact properties)
    ``email``, ``external_id``, ``shopseg_segment``, ``shopseg_segment_name``, ``shopseg_action``,
    ``shopseg_recency_days``, ``shopseg_frequency``, ``shopseg_monetary``, ``shopseg_recommended_products``
    (top product ids, ``;``-separated), ``shopseg_run_id``.

E-mail addresses come from an ``email`` column of the run's ``customers`` table when it has one; otherwise the
column is empty and ``External ID``/``external_id`` carries the customer id to match on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb

from shopseg.errors import BackendError, ConfigError

__all__ = [
    "CRM_LAYOUTS",
    "FILE_FORMATS",
    "ExportPlan",
    "ExportReport",
    "export_files",
    "export_run",
    "plan_export",
    "pseudonym",
]

FILE_FORMATS = ("csv", "parquet", "json", "crm-tags", "crm-properties")
CRM_LAYOUTS = {
    "crm-tags": "Mailchimp-style tags CSV: Email Address, External ID, Tags",
    "crm-properties": "HubSpot-style contact-property CSV: email, external_id, shopseg_* properties",
}
Format = Literal["csv", "parquet", "json", "crm-tags", "crm-properties"]
MIN_SALT_LENGTH = 8
_EMAIL_COLUMNS = ("email", "e_mail", "email_address", "mail")


def pseudonym(customer_id: str, salt: str) -> str:
    """The pseudonym of one customer id: SHA-256 of the salt followed by the id, as 64 hex digits (the same
    value the exports compute in SQL)."""
    import hashlib

    return hashlib.sha256((salt + customer_id).encode("utf-8")).hexdigest()


@dataclass
class ExportReport:
    """What an export wrote: per table or file the rows, the segments held back, the privacy options."""

    run_id: str
    target: str
    format: str
    rows: dict[str, int] = field(default_factory=dict)
    suppressed_segments: list[dict[str, Any]] = field(default_factory=list)
    exported_segments: list[int] = field(default_factory=list)
    pseudonymised: bool = False
    min_segment_size: int = 1
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExportPlan:
    """The SQL (with parameters) of each exported table over the run database, and what it leaves out."""

    run_id: str
    tables: dict[str, tuple[str, list[Any]]]
    suppressed: list[dict[str, Any]]
    kept: list[int]
    pseudonymised: bool
    min_segment_size: int
    email_sql: str | None
    notes: list[str]


def _check_options(pseudonymise: bool, salt: str | None, min_segment_size: int) -> None:
    if min_segment_size < 1:
        raise ConfigError(f"--min-segment-size must be at least 1 (got {min_segment_size})")
    if pseudonymise and not salt:
        raise ConfigError(
            "pseudonymised ids need a secret salt: pass --salt or set SHOPSEG_PSEUDONYM_SALT (keep it secret, and "
            "the same across exports so that ids stay linkable)"
        )
    if pseudonymise and salt is not None and len(salt) < MIN_SALT_LENGTH:
        raise ConfigError(
            f"the salt is too short ({len(salt)} characters); use at least {MIN_SALT_LENGTH}, e.g. the output of "
            "`openssl rand -hex 16`"
        )


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {str(r[0]) for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def plan_export(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    pseudonymise: bool = False,
    salt: str | None = None,
    min_segment_size: int = 1,
) -> ExportPlan:
    """The queries every export runs: segments, profiles, recommendations and the banner plan, with small
    segments left out and ids pseudonymised when asked."""
    _check_options(pseudonymise, salt, min_segment_size)
    sizes = con.execute("SELECT segment, name, size FROM profiles ORDER BY segment").fetchall()
    kept = [int(s) for s, _, n in sizes if int(n) >= min_segment_size]
    suppressed = [
        {"segment": int(s), "name": str(nm), "size": int(n)} for s, nm, n in sizes if int(n) < min_segment_size
    ]
    keep = "(" + ", ".join(str(s) for s in kept) + ")" if kept else "(NULL)"
    params: list[Any] = [salt] if pseudonymise else []
    cid = "sha256(? || s.customer_id)" if pseudonymise else "s.customer_id"
    order = "1" if pseudonymise else "s.customer_id"
    seg_cols = [str(r[0]) for r in con.execute("DESCRIBE segments").fetchall()]
    rest = ", ".join(f's."{c}"' for c in seg_cols if c != "customer_id")
    tables: dict[str, tuple[str, list[Any]]] = {
        "segments": (
            f"SELECT {cid} AS customer_id, {rest} FROM segments s WHERE s.segment IN {keep} ORDER BY {order}",
            list(params),
        ),
        "profiles": (f"SELECT * FROM profiles WHERE segment IN {keep} ORDER BY segment", []),
    }
    names = _tables(con)
    if "recommendations" in names:
        tables["recommendations"] = (
            f"SELECT {cid} AS customer_id, r.rank, r.product_id, r.product_name, r.score, r.source "
            f"FROM recommendations r JOIN segments s USING (customer_id) WHERE s.segment IN {keep} "
            f"ORDER BY {order}, r.rank",
            list(params),
        )
    if "banners" in names:
        # the banner decision per segment and slot (promote internally or sell, its economics, what to feature and
        # when); a column no row has a value for is typed NULL in DuckDB, which a database export cannot declare
        bcols = con.execute("DESCRIBE banners").fetchall()
        sel = ", ".join(
            f'CAST("{c}" AS DOUBLE) AS "{c}"' if str(t).strip('"').upper() == "NULL" else f'"{c}"' for c, t, *_ in bcols
        )
        tables["banners"] = (f"SELECT {sel} FROM banners WHERE segment IN {keep} ORDER BY segment, slot", [])
    notes: list[str] = []
    email_sql = None
    if "customers" in names:
        cols = {str(r[0]).lower(): str(r[0]) for r in con.execute("DESCRIBE customers").fetchall()}
        hit = next((cols[c] for c in _EMAIL_COLUMNS if c in cols), None)
        if hit and not pseudonymise:
            email_sql = f'SELECT customer_id, CAST("{hit}" AS VARCHAR) AS email FROM customers'
        elif hit:
            notes.append("e-mail addresses left out: customer ids are pseudonymised")
    if suppressed:
        notes.append(
            f"{len(suppressed)} segment(s) below the minimum size {min_segment_size} not exported: "
            + ", ".join(f"{s['segment']} ({s['name']}, {s['size']} customers)" for s in suppressed)
        )
    return ExportPlan(run_id, tables, suppressed, kept, pseudonymise, min_segment_size, email_sql, notes)


def _crm_sql(plan: ExportPlan, layout: str, n_products: int = 5) -> tuple[str, list[Any]]:
    seg_sql, params = plan.tables["segments"]
    email = f"LEFT JOIN ({plan.email_sql}) e ON e.customer_id = x.customer_id" if plan.email_sql else ""
    email_col = "e.email" if plan.email_sql else "CAST(NULL AS VARCHAR)"
    slug = "trim(regexp_replace(lower(x.segment_name), '[^a-z0-9]+', '-', 'g'), '-')"
    if layout == "crm-tags":
        sql = (
            f'SELECT {email_col} AS "Email Address", x.customer_id AS "External ID", '
            f"'shopseg-segment-' || x.segment || ',' || {slug} AS \"Tags\" FROM ({seg_sql}) x {email}"
        )
        return sql, params
    recs = ""
    rec_col = "CAST(NULL AS VARCHAR)"
    all_params = list(params)
    if "recommendations" in plan.tables:
        rec_sql, rec_params = plan.tables["recommendations"]
        recs = (
            f"LEFT JOIN (SELECT customer_id, string_agg(product_id, ';' ORDER BY rank) AS products FROM ({rec_sql}) "
            f"WHERE rank <= {int(n_products)} GROUP BY customer_id) r ON r.customer_id = x.customer_id"
        )
        rec_col = "r.products"
        all_params += rec_params
    cols = {c: f"round(x.{c}, 2)" for c in ("recency_days", "frequency", "monetary")}
    sql = (
        f"SELECT {email_col} AS email, x.customer_id AS external_id, x.segment AS shopseg_segment, "
        "x.segment_name AS shopseg_segment_name, x.action AS shopseg_action, "
        + ", ".join(f"{expr} AS shopseg_{c}" for c, expr in cols.items())
        + f", {rec_col} AS shopseg_recommended_products, '{plan.run_id}' AS shopseg_run_id "
        f"FROM ({seg_sql}) x {email} {recs}"
    )
    return sql, all_params


def _copy(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any], path: Path, fmt: str) -> int:
    """Write a query to a file atomically (temp file + rename); returns the rows written."""
    opts = {
        "csv": "FORMAT csv, HEADER true",
        "parquet": "FORMAT parquet, COMPRESSION zstd",
        "json": "FORMAT json, ARRAY true",
    }[fmt]
    tmp = path.with_name(path.name + ".tmp")
    try:
        con.execute(f"COPY ({sql}) TO '{str(tmp).replace(chr(39), chr(39) * 2)}' ({opts})", list(params) or None)
        rows = con.execute(f"SELECT count(*) FROM ({sql})", list(params) or None).fetchall()[0][0]
    except duckdb.Error as exc:
        tmp.unlink(missing_ok=True)
        raise BackendError(f"could not write '{path}': {exc}") from None
    tmp.replace(path)
    return int(rows)


def export_files(
    run_dir: str | Path,
    dest: str | Path,
    *,
    format: Format = "csv",
    pseudonymise: bool = False,
    salt: str | None = None,
    min_segment_size: int = 1,
) -> ExportReport:
    """Write the run's segments, profiles and recommendations into ``dest`` as CSV, Parquet or JSON (one file
    per table), or one CRM-ready CSV (``crm-tags``, ``crm-properties``); plus ``export_report.json``."""
    from shopseg.serve.rundir import open_run_db, run_id

    if format not in FILE_FORMATS:
        raise ConfigError(f"unknown export format '{format}'; choose one of {', '.join(FILE_FORMATS)}")
    _check_options(pseudonymise, salt, min_segment_size)
    if Path(dest).resolve() == Path(run_dir).resolve():
        raise ConfigError(
            f"the export folder '{dest}' is the run folder itself, whose files it would overwrite; export to "
            "another folder (e.g. --to out/crm)"
        )
    path, _, con = open_run_db(run_dir)
    try:
        rid = run_id(path)
        plan = plan_export(con, rid, pseudonymise=pseudonymise, salt=salt, min_segment_size=min_segment_size)
        out = Path(dest)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the export folder '{out}': {exc}") from None
        report = ExportReport(
            rid,
            str(out),
            format,
            suppressed_segments=plan.suppressed,
            exported_segments=plan.kept,
            pseudonymised=pseudonymise,
            min_segment_size=min_segment_size,
            notes=list(plan.notes),
        )
        if format in CRM_LAYOUTS:
            sql, params = _crm_sql(plan, format)
            name = format.replace("-", "_") + ".csv"
            report.rows[name] = _copy(con, sql, params, out / name, "csv")
            if not plan.email_sql:
                report.notes.append("no e-mail column in the run: match contacts on the external id")
        else:
            ext = {"csv": "csv", "parquet": "parquet", "json": "json"}[format]
            for table, (sql, params) in plan.tables.items():
                name = f"{table}.{ext}"
                report.rows[name] = _copy(con, sql, params, out / name, format)
    finally:
        con.close()
    tmp = out / "export_report.json.tmp"
    tmp.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    tmp.replace(out / "export_report.json")
    return report


_PG = re.compile(r"^postgres(ql)?://", re.IGNORECASE)


def export_run(
    run_dir: str | Path,
    to: str | Path,
    *,
    format: Format = "csv",
    pseudonymise: bool = False,
    salt: str | None = None,
    min_segment_size: int = 1,
    schema: str = "public",
    table_prefix: str = "shopseg_",
    mode: Literal["replace", "run"] = "replace",
) -> ExportReport:
    """Export a run to a PostgreSQL database (``to`` = ``postgresql://…``) or to a folder in ``format``."""
    if _PG.match(str(to)):
        from shopseg.export.postgres import export_postgres

        return export_postgres(
            run_dir,
            str(to),
            pseudonymise=pseudonymise,
            salt=salt,
            min_segment_size=min_segment_size,
            schema=schema,
            table_prefix=table_prefix,
            mode=mode,
        )
    return export_files(
        run_dir, to, format=format, pseudonymise=pseudonymise, salt=salt, min_segment_size=min_segment_size
    )
