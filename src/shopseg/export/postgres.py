"""PostgreSQL export with psycopg 3: a run's segments, profiles and recommendations as tables.

``export_postgres(run_dir, "postgresql://user@host/db")`` writes ``<prefix>segments``, ``<prefix>profiles``,
``<prefix>recommendations`` and the audit table ``<prefix>runs`` (default prefix ``shopseg_``) in one
transaction: tables are created when absent (new columns added), the old rows are deleted and the new ones
loaded with ``COPY``, then everything is committed at once. Readers see either the old or the new export,
never a mix; a failed export changes nothing. Every row carries the ``run_id`` of its run.

``mode="replace"`` (default) leaves only this run in the tables; ``mode="run"`` replaces this run's rows and
keeps other runs' rows beside them. Exporting the same run twice never duplicates rows.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any, Literal

import duckdb

from shopseg.errors import BackendError, ConfigError
from shopseg.export.crm import ExportReport, plan_export

__all__ = ["export_postgres", "mask_dsn", "pg_type"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")
_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,20}$|^$")

#: DuckDB column type -> PostgreSQL column type (anything else is exported as text)
_TYPES = {
    "VARCHAR": "text",
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "TINYINT": "smallint",
    "UTINYINT": "smallint",
    "USMALLINT": "integer",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric",
    "HUGEINT": "numeric",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP_NS": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
}
#: how information_schema.columns.data_type spells each type, to compare with an existing table
_SPELLED = {"timestamp": "timestamp without time zone", "timestamptz": "timestamp with time zone"}


def pg_type(duckdb_type: str) -> str:
    """The PostgreSQL type a DuckDB column is stored as."""
    t = duckdb_type.upper()
    if t.startswith("DECIMAL"):
        return "numeric"
    return _TYPES.get(t, "text")


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***`` (for messages and reports)."""
    masked = re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)
    return re.sub(r"(password=)\S+", r"\1***", masked, flags=re.IGNORECASE)


def _connect(dsn: str) -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the extra is installed in development
        raise BackendError("the PostgreSQL export needs psycopg: pip install 'shopseg[postgres]'") from None
    try:
        return psycopg.connect(dsn, connect_timeout=15, client_encoding="utf8", application_name="shopseg")
    except psycopg.Error as exc:
        msg = str(exc).strip().replace(dsn, mask_dsn(dsn))
        raise BackendError(f"cannot connect to PostgreSQL at {mask_dsn(dsn)}: {msg}") from None


def export_postgres(
    run_dir: str | Path,
    dsn: str,
    *,
    pseudonymise: bool = False,
    salt: str | None = None,
    min_segment_size: int = 1,
    schema: str = "public",
    table_prefix: str = "shopseg_",
    mode: Literal["replace", "run"] = "replace",
) -> ExportReport:
    """Write the run's tables to PostgreSQL in one transaction (see the module docs)."""
    from psycopg import sql as pgsql

    from shopseg.serve.rundir import open_run_db, run_id

    if not _IDENT.match(schema):
        raise ConfigError(f"schema name {schema!r} is not a plain SQL name (letters, digits, _; at most 41)")
    if not _PREFIX.match(table_prefix):
        raise ConfigError(f"table prefix {table_prefix!r} is not a plain SQL name part (letters, digits, _)")
    if mode not in ("replace", "run"):
        raise ConfigError(f"mode must be 'replace' or 'run' (got {mode!r})")
    path, manifest, con = open_run_db(run_dir)
    try:
        rid = run_id(path)
        plan = plan_export(con, rid, pseudonymise=pseudonymise, salt=salt, min_segment_size=min_segment_size)
        report = ExportReport(
            rid,
            f"{mask_dsn(dsn)} ({schema}.{table_prefix}*)",
            "postgresql",
            suppressed_segments=plan.suppressed,
            exported_segments=plan.kept,
            pseudonymised=pseudonymise,
            min_segment_size=min_segment_size,
            notes=list(plan.notes),
        )
        pg = _connect(dsn)
        import psycopg

        try:
            with pg.transaction():
                cur = pg.cursor()
                if schema != "public":
                    cur.execute(pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pgsql.Identifier(schema)))
                for table, (query, params) in plan.tables.items():
                    name = f"{table_prefix}{table}"
                    cols = [
                        (str(r[0]), pg_type(str(r[1])))
                        for r in con.execute(f"DESCRIBE ({query})", params or None).fetchall()
                    ]
                    _ensure_table(cur, schema, name, cols)
                    target = pgsql.Identifier(schema, name)
                    if mode == "replace":
                        cur.execute(pgsql.SQL("DELETE FROM {}").format(target))
                    else:
                        cur.execute(pgsql.SQL("DELETE FROM {} WHERE run_id = %s").format(target), [rid])
                    report.rows[name] = _copy_rows(con, cur, query, params, target, rid, [c for c, _ in cols])
                _write_run_row(cur, schema, f"{table_prefix}runs", rid, path, manifest, report, mode)
        except psycopg.Error as exc:
            raise BackendError(
                f"PostgreSQL export to {mask_dsn(dsn)} failed and was rolled back (nothing changed): {str(exc).strip()}"
            ) from None
        finally:
            pg.close()
    finally:
        con.close()
    return report


def _ensure_table(cur: Any, schema: str, name: str, cols: list[tuple[str, str]]) -> None:
    """Create the table when absent; add columns it lacks; refuse a column whose type changed."""
    from psycopg import sql as pgsql

    target = pgsql.Identifier(schema, name)
    defs = [pgsql.SQL("run_id text NOT NULL")] + [
        pgsql.SQL("{} {}").format(pgsql.Identifier(c), pgsql.SQL(t)) for c, t in cols
    ]
    cur.execute(pgsql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(target, pgsql.SQL(", ").join(defs)))
    cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        [schema, name],
    )
    have = {str(r[0]): str(r[1]) for r in cur.fetchall()}
    for c, t in cols:
        if c not in have:
            cur.execute(pgsql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(target, pgsql.Identifier(c), pgsql.SQL(t)))
        elif have[c] != _SPELLED.get(t, t):
            raise ConfigError(
                f"column {schema}.{name}.{c} is {have[c]} in PostgreSQL but this run has {t}; drop or rename the "
                f"table (or export with another --table-prefix)"
            )
    cur.execute(
        pgsql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (run_id)").format(pgsql.Identifier(f"{name}_run_id"), target)
    )


def _copy_rows(
    con: duckdb.DuckDBPyConnection,
    cur: Any,
    query: str,
    params: list[Any],
    target: Any,
    rid: str,
    cols: list[str],
) -> int:
    """Stream the query's rows into the table with COPY (CSV written by DuckDB, read back in 1 MiB blocks)."""
    from psycopg import sql as pgsql

    with tempfile.TemporaryDirectory(prefix="shopseg-pg-") as tmp:
        csv = Path(tmp) / "rows.csv"
        sel = ", ".join(f'"{c}"' for c in cols)
        try:
            con.execute(
                f"COPY (SELECT '{rid}' AS run_id, {sel} FROM ({query})) TO '{csv}' (FORMAT csv, HEADER false)",
                params or None,
            )
        except duckdb.Error as exc:
            raise BackendError(f"could not read the run's rows to export: {exc}") from None
        names = pgsql.SQL(", ").join(pgsql.Identifier(c) for c in ["run_id", *cols])
        stmt = pgsql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(target, names)
        with cur.copy(stmt) as copy, csv.open("rb") as fh:
            while block := fh.read(1 << 20):
                copy.write(block)
        rows = int(cur.rowcount)
    return rows


def _write_run_row(
    cur: Any,
    schema: str,
    name: str,
    rid: str,
    path: Path,
    manifest: dict[str, Any],
    report: ExportReport,
    mode: str,
) -> None:
    """One row per exported run: when, from where, how many, with which privacy options."""
    from psycopg import sql as pgsql

    target = pgsql.Identifier(schema, name)
    cur.execute(
        pgsql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (run_id text PRIMARY KEY, run_dir text, as_of timestamp, "
            "customers bigint, segments integer, pseudonymised boolean, min_segment_size integer, "
            "suppressed_segments text, exported_at timestamptz NOT NULL DEFAULT now())"
        ).format(target)
    )
    if mode == "replace":
        cur.execute(pgsql.SQL("DELETE FROM {}").format(target))
    else:
        cur.execute(pgsql.SQL("DELETE FROM {} WHERE run_id = %s").format(target), [rid])
    seg_rows = report.rows.get(name.removesuffix("runs") + "segments", 0)
    cur.execute(
        pgsql.SQL(
            "INSERT INTO {} (run_id, run_dir, as_of, customers, segments, pseudonymised, min_segment_size, "
            "suppressed_segments) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(target),
        [
            rid,
            str(path.resolve()),
            manifest.get("as_of"),
            seg_rows,
            len(report.exported_segments),
            report.pseudonymised,
            report.min_segment_size,
            json.dumps(report.suppressed_segments),
        ],
    )
