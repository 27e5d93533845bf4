"""Map source columns to the canonical ``transactions`` table, and type the values in SQL.

Mapping is automatic (names compared case-, space- and punctuation-insensitively against the synonyms in
:mod:`shopseg.schema`) and can be set by hand; explicit names always win. Values are cast with ``TRY_``
functions so that a value that does not parse becomes NULL and its row is quarantined with a reason, never
dropped silently or allowed to crash the load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from shopseg.backends.base import Backend
from shopseg.backends.duckdb import quote
from shopseg.errors import DataError, SchemaError
from shopseg.schema import TRANSACTION_COLUMNS, Column, closest, normalize_name

#: Date formats tried, most specific first; ties go to the earlier one (ISO, then US m/d/y, then d/m/y).
DATE_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%m/%d/%y %H:%M",
    "%m/%d/%y",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%d/%m/%y %H:%M",
    "%d/%m/%y",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y %H:%M",
    "%d-%m-%Y",
    "%Y%m%d",
    "%Y%m%d%H%M%S",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d, %Y",
    "%B %d, %Y",
    # event logs: '2019-10-01 00:00:00 UTC' (REES46), ISO with a Z (JavaScript, GA exports)
    "%Y-%m-%d %H:%M:%S UTC",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S.%fZ",
)
_SAMPLE = 20_000
#: Tried after the detected format, so that ISO dates in an otherwise day-first/US column still parse.
_ISO_FORMATS: tuple[str, ...] = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d")


@dataclass
class ColumnMapping:
    """Which source column feeds each canonical column, and how values are typed."""

    source: dict[str, str]  # canonical -> source column
    how: dict[str, str] = field(default_factory=dict)  # canonical -> 'explicit' | 'automatic' | 'guessed'
    date_format: str | None = None
    decimal_comma: bool = False
    notes: list[str] = field(default_factory=list)

    def has(self, canonical: str) -> bool:
        return canonical in self.source


def _flag_help(col: Column, section: str = "input") -> str:
    where = f"[{section}.columns] {col.name} = 'NAME' in the config file"
    return f"set it with {col.flag} NAME (or {where})" if col.flag else f"set it with {where}"


def map_columns(
    source_columns: list[str],
    explicit: dict[str, str],
    *,
    columns: tuple[Column, ...] = TRANSACTION_COLUMNS,
    required: tuple[str, ...] = ("customer_id", "ts"),
    section: str = "input",
) -> ColumnMapping:
    """Automatic mapping with explicit overrides; raises SchemaError naming what is missing and the fix.

    ``columns`` is the canonical table's column list (order lines by default; events pass
    :data:`~shopseg.schema.EVENT_COLUMNS`), ``required`` the columns that must be found, and ``section`` the
    config section named in error messages.
    """
    mapping: dict[str, str] = {}
    how: dict[str, str] = {}
    for canon, src in explicit.items():
        col = next(c for c in columns if c.name == canon)
        if src not in source_columns:
            near = closest(src, source_columns)
            hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            raise SchemaError(
                f"column '{src}' (given for {canon}) not found{hint} The file has columns: "
                f"{', '.join(source_columns)}. {_flag_help(col, section)}"
            )
        mapping[canon] = src
        how[canon] = "explicit"
    used = set(mapping.values())
    norm = {c: normalize_name(c) for c in source_columns}
    # pass 1: exact synonym matches, in synonym priority order
    for col in columns:
        if col.name in mapping:
            continue
        for syn in (normalize_name(col.name), *col.synonyms):
            hit = next((c for c in source_columns if c not in used and norm[c] == syn), None)
            if hit is not None:
                mapping[col.name], how[col.name] = hit, "automatic"
                used.add(hit)
                break
    # pass 2: a source name that contains a synonym of 4+ letters ('Price (GBP)', 'Order Date UTC')
    for col in columns:
        if col.name in mapping:
            continue
        best: tuple[int, str] | None = None
        for c in source_columns:
            if c in used:
                continue
            for syn in col.synonyms:
                if len(syn) >= 4 and syn in norm[c] and (best is None or len(syn) > best[0]):
                    best = (len(syn), c)
        if best is not None:
            mapping[col.name], how[col.name] = best[1], "automatic"
            used.add(best[1])
    result = ColumnMapping(mapping, how)
    _require(result, source_columns, columns, required, section)
    return result


def _require(
    m: ColumnMapping,
    source_columns: list[str],
    columns: tuple[Column, ...] = TRANSACTION_COLUMNS,
    required: tuple[str, ...] = ("customer_id", "ts"),
    section: str = "input",
) -> None:
    for name in required:
        if not m.has(name):
            col = next(c for c in columns if c.name == name)
            unused = [c for c in source_columns if c not in m.source.values()]
            near = (
                closest(name, unused)
                or [c for c in unused if any(s in normalize_name(c) for s in col.synonyms if len(s) >= 3)][:3]
            )
            hint = f" Closest candidates: {', '.join(repr(n) for n in near)}." if near else ""
            raise SchemaError(
                f"required column '{name}' ({col.description}) not found among the columns "
                f"{', '.join(repr(c) for c in source_columns)}.{hint} {_flag_help(col, section)}"
            )
    if columns is TRANSACTION_COLUMNS and not m.has("unit_price") and not m.has("amount"):
        raise SchemaError(
            "no price column found: need a unit price (--price-col) or a line total (--amount-col) among "
            f"{', '.join(repr(c) for c in source_columns)}"
        )


# ------------------------------------------------------------------------------------------ headerless files


def guess_headerless(backend: Backend, table: str, columns: list[str]) -> dict[str, str]:
    """Guess roles of unnamed columns from their values: a date, a customer id, a quantity, an amount."""
    exprs = []
    for c in columns:
        q = f"CAST({quote(c)} AS VARCHAR)"
        exprs.append(
            f"avg(CASE WHEN regexp_full_match(trim({q}), '(19|20)\\d\\d(0[1-9]|1[0-2])(0[1-9]|[12]\\d|3[01])') "
            f"OR try_cast(trim({q}) AS TIMESTAMP) IS NOT NULL THEN 1 ELSE 0 END), "
            f"avg(CASE WHEN regexp_full_match(trim({q}), '-?\\d+') THEN 1 ELSE 0 END), "
            f"avg(CASE WHEN regexp_full_match(trim({q}), '-?\\d*\\.\\d+') THEN 1 ELSE 0 END)"
        )
    row = backend.rows(f"SELECT {', '.join(exprs)} FROM (SELECT * FROM {quote(table)} LIMIT {_SAMPLE})")[0]
    assert row is not None
    stats = {c: (row[3 * i] or 0.0, row[3 * i + 1] or 0.0, row[3 * i + 2] or 0.0) for i, c in enumerate(columns)}
    guess: dict[str, str] = {}
    dates = [c for c in columns if stats[c][0] > 0.95]
    if dates:
        guess["ts"] = dates[0]
    ints = [c for c in columns if stats[c][1] > 0.95 and c not in guess.values()]
    decimals = [c for c in columns if stats[c][1] + stats[c][2] > 0.95 and stats[c][2] > 0.05]
    if ints:
        guess["customer_id"] = ints[0]
    if decimals:
        guess["amount"] = decimals[-1]
    rest = [c for c in ints[1:] if c not in guess.values()]
    if rest:
        guess["quantity"] = rest[0]
    return guess


# ------------------------------------------------------------------------------------------ typing values


def detect_date_format(backend: Backend, table: str, column: str, sql_type: str) -> str | None:
    """The strptime format that parses most values (None when the column is already a timestamp/date)."""
    t = sql_type.upper()
    if t.startswith(("TIMESTAMP", "DATE")):
        return None
    q = f"trim(CAST({quote(column)} AS VARCHAR))"
    counts = ", ".join(f"count(try_strptime(v, '{f}'))" for f in DATE_FORMATS)
    sample = (
        f"SELECT {q} AS v FROM {quote(table)} WHERE {quote(column)} IS NOT NULL "
        f"USING SAMPLE reservoir({_SAMPLE} ROWS) REPEATABLE (7)"
    )
    row = backend.rows(f"SELECT count(v), {counts} FROM ({sample})")[0]
    assert row is not None
    total = int(row[0])
    if total == 0:
        return DATE_FORMATS[0]
    scores = [int(x) for x in row[1:]]
    best = max(scores)
    if best == 0:
        # integers that are epoch seconds / milliseconds
        epoch = backend.scalar(
            f"SELECT avg(CASE WHEN regexp_full_match(v, '\\d{{10}}(\\d{{3}}|\\d{{6}})?') THEN 1 ELSE 0 END) "
            f"FROM ({sample})"
        )
        if epoch and float(epoch) > 0.95:
            return "epoch"
        return DATE_FORMATS[0]
    tied = [f for f, s in zip(DATE_FORMATS, scores, strict=True) if s == best]
    if len(tied) > 1:
        # the sample cannot tell (e.g. m/d vs d/m when every day is <= 12): ask the whole column
        full = ", ".join(f"count(try_strptime({q}, '{f}'))" for f in tied)
        row2 = backend.rows(f"SELECT {full} FROM {quote(table)}")[0]
        assert row2 is not None
        best_full = max(int(x) for x in row2)
        tied = [f for f, s in zip(tied, row2, strict=True) if int(s) == best_full]
    return tied[0]


def ts_expr(column: str, sql_type: str, fmt: str | None) -> str:
    """SQL that turns the source column into a TIMESTAMP (NULL when it does not parse)."""
    q = quote(column)
    t = sql_type.upper()
    if t.startswith("TIMESTAMP WITH TIME ZONE"):
        return f"timezone('UTC', {q})"  # the UTC wall time, whatever the session's time zone
    if t.startswith(("TIMESTAMP", "DATE")):
        return f"CAST({q} AS TIMESTAMP)"
    v = f"trim(CAST({q} AS VARCHAR))"
    if fmt == "epoch":
        # epoch_ms/make_timestamp give a naive UTC TIMESTAMP; to_timestamp(...)::TIMESTAMP would shift it into
        # the session's (the machine's) time zone. Anything but 13 (ms) or up to 11 (s) digits is no date.
        return (
            f"CASE WHEN regexp_full_match({v}, '\\d{{13}}') THEN epoch_ms(CAST({v} AS BIGINT)) "
            f"WHEN regexp_full_match({v}, '\\d{{16}}') THEN make_timestamp(CAST({v} AS BIGINT)) "
            f"WHEN regexp_full_match({v}, '\\d{{1,11}}') THEN make_timestamp(CAST({v} AS BIGINT) * 1000000) END"
        )
    assert fmt is not None
    alts = [fmt]
    date_only = fmt.split(" ")[0].split("T")[0] if ("%H" in fmt) else None
    if date_only and date_only != fmt:
        alts.append(date_only)
    # ISO text is unambiguous, and it is what typed timestamps become when Parquet is read next to CSV
    alts += [f for f in _ISO_FORMATS if f not in alts]
    fmts = "[" + ", ".join(f"'{f}'" for f in alts) + "]"
    return f"try_strptime({v}, {fmts})"


def detect_decimal_comma(backend: Backend, table: str, columns: list[str]) -> bool:
    """True when numbers are written '1,25' (European exports) rather than '1.25'."""
    if not columns:
        return False
    parts = " + ".join(
        f"(CASE WHEN regexp_full_match(trim(CAST({quote(c)} AS VARCHAR)), '-?\\d+,\\d{{1,3}}') "
        "AND NOT regexp_full_match(trim(CAST({0} AS VARCHAR)), '-?\\d{1,3},\\d{3}') THEN 1 ELSE 0 END)".replace(
            "{0}", quote(c)
        )
        for c in columns
    )
    dots = " + ".join(
        f"(CASE WHEN regexp_full_match(trim(CAST({quote(c)} AS VARCHAR)), '-?\\d*\\.\\d+') THEN 1 ELSE 0 END)"
        for c in columns
    )
    row = backend.rows(f"SELECT sum({parts}), sum({dots}) FROM (SELECT * FROM {quote(table)} LIMIT {_SAMPLE})")[0]
    assert row is not None
    commas, dot = int(row[0] or 0), int(row[1] or 0)
    return commas > 0 and dot == 0


def number_expr(column: str, sql_type: str, decimal_comma: bool) -> str:
    """SQL that turns the source column into DOUBLE; currency signs and thousands separators are removed."""
    q = quote(column)
    t = sql_type.upper()
    if any(
        t.startswith(k)
        for k in (
            "DOUBLE",
            "FLOAT",
            "REAL",
            "DECIMAL",
            "INT",
            "BIGINT",
            "SMALLINT",
            "TINYINT",
            "HUGEINT",
            "UBIGINT",
            "UINTEGER",
            "USMALLINT",
            "UTINYINT",
        )
    ):
        return f"CAST({q} AS DOUBLE)"
    v = f"trim(CAST({q} AS VARCHAR))"
    if decimal_comma:
        v = f"replace(replace({v}, '.', ''), ',', '.')"
    else:
        v = f"replace({v}, ',', '')"
    # drop currency symbols and spaces, keep sign, digits, dot and exponent
    v = f"regexp_replace({v}, '[^0-9eE+\\-.]', '', 'g')"
    return f"try_cast(NULLIF({v}, '') AS DOUBLE)"


_INTEGER_TYPES = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT")


def id_expr(column: str, sql_type: str = "VARCHAR") -> str:
    """Identifiers as text; '17850.0' (ids written as floats) becomes '17850'.

    The float clean-up is a regular expression, so it only runs on values that contain a dot: on 10M rows
    that halved the cost of typing three id columns.
    """
    q = quote(column)
    t = sql_type.upper()
    if t in _INTEGER_TYPES:
        return f"CAST({q} AS VARCHAR)"
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL"):
        return (
            f"CASE WHEN NOT isfinite({q}) THEN NULL WHEN {q} = trunc({q}) THEN CAST(CAST({q} AS HUGEINT) AS VARCHAR) "
            f"ELSE CAST({q} AS VARCHAR) END"
        )
    v = f"NULLIF(trim(CAST({q} AS VARCHAR)), '')"
    return f"CASE WHEN contains({v}, '.') THEN regexp_replace({v}, '^(\\d+)\\.0+$', '\\1') ELSE {v} END"


def text_expr(column: str) -> str:
    return f"NULLIF(trim(CAST({quote(column)} AS VARCHAR)), '')"


def present(backend: Backend, table: str, column: str) -> bool:
    """Whether any row has a non-empty value in ``column`` (the scan stops at the first one)."""
    n = backend.scalar(
        f"SELECT count(*) FROM (SELECT 1 FROM {quote(table)} "
        f"WHERE NULLIF(trim(CAST({quote(column)} AS VARCHAR)), '') IS NOT NULL LIMIT 1)"
    )
    return bool(n)


def check_not_empty(backend: Backend, table: str, m: ColumnMapping) -> None:
    """Refuse input whose customer id column is empty in every row."""
    src = m.source["customer_id"]
    if not present(backend, table, src):
        raise DataError(
            f"no customer ids at all: column '{src}' (mapped to customer_id) is empty in every row, so customers "
            "cannot be segmented. If another column identifies customers, set it with --customer-col NAME"
        )


def is_simple_name(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None
