"""Ingest a customer table (CSV, Parquet or an Excel sheet) into the canonical ``customers`` table.

One row per customer: ``customer_id`` plus attributes, each typed as *numeric*, *date* or *categorical*.
Excel workbooks are read whole, and their relations are found from the column names alone:

* the **customer sheet** is the one named like customers/clients/users/members (or set in ``[customers]
  sheet``), else the first sheet whose id column is (nearly) unique and maps to ``customer_id``;
* a **lookup sheet** is one whose key column (a nearly unique ``*_id`` column) appears under the same name in
  another sheet: ``customers.city_id`` → sheet ``cities`` (``city_id, city_name``) gives the attribute
  ``city`` with the city's name. Lookups chain (``transactions.branch_id`` → ``branches.merchant_id`` →
  ``merchants.merchant_name`` gives ``merchant``);
* an **activity sheet** holds per-customer coupon transactions: a sheet with the customer id column (not
  unique) and a date column, e.g. the coupon workbook's ``transactions`` (date, status burned/subscribed,
  coupon name, burn date, branch). Its rows become the canonical ``coupons`` table.

Values are typed in SQL with ``TRY_`` casts (the same helpers as the order lines), so a value that does not
parse becomes NULL; the row stays (an attribute is missing, the customer is not). Rows without an id and
repeated ids are quarantined by :func:`shopseg.clean.customers.clean_customers`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from shopseg.backends.duckdb import DuckDBBackend, quote
from shopseg.config import CustomersConfig
from shopseg.errors import DataError, SchemaError
from shopseg.ingest.mapping import detect_date_format, id_expr, number_expr, text_expr, ts_expr
from shopseg.ingest.readers import EXCEL_SUFFIXES, expand_inputs, file_kind, load_raw
from shopseg.schema import closest, column, normalize_name

__all__ = [
    "Activity",
    "Attribute",
    "CustomersIngest",
    "Lookup",
    "ingest_customers",
    "is_customer_workbook",
    "workbook_sheets",
]

RAW = "raw_customers"
TYPED = "customers_typed"
RAW_ACTIVITY = "raw_coupons"
TYPED_ACTIVITY = "coupons_typed"

#: sheet names (normalised) that hold one row per customer
CUSTOMER_SHEETS = ("customers", "customer", "clients", "client", "users", "user", "members", "member", "accounts")
#: sheet names (normalised) preferred for the activity sheet
ACTIVITY_SHEETS = ("transactions", "transaction", "coupons", "coupon", "redemptions", "subscriptions", "activity")
_LABEL_HINTS = ("name", "label", "title", "description", "desc", "text", "value")
_STATUS_NAMES = ("status", "transactionstatus", "couponstatus", "state", "type", "transactiontype")
_COUPON_NAMES = ("couponname", "coupon", "couponcode", "code", "voucher", "vouchercode", "offer", "promotion")
_BURN_HINTS = ("burn", "redeem", "used", "redemption")
#: a column is a key when at least this share of its non-empty values is distinct
_KEY_UNIQUE = 0.95
#: a text column with a distinct value in more than this share of rows (and > 50 values) names individuals
_IDENTIFIER_SHARE = 0.9
_MAX_CHAIN = 3
#: what a number written in a cell looks like (sign, currency, digits with separators, exponent, percent)
_NUMBER_RE = r"[-+]?[$€£¥]?\s?\d[\d,.\s]*([eE][-+]?\d+)?\s?%?"


@dataclass(frozen=True)
class Attribute:
    """One attribute column of the canonical table: name, kind and where its values come from."""

    name: str
    kind: str  # "numeric" | "date" | "categorical"
    source: str  # source column
    lookup: str | None = None  # "cities.city_name" when the values are names from a lookup sheet

    def describe(self, origin: str) -> str:
        via = f", names from sheet column {self.lookup}" if self.lookup else ""
        return f"customer attribute ({self.kind}) from {origin} column '{self.source}'{via}"


@dataclass(frozen=True)
class Lookup:
    """A foreign-key column resolved through a lookup sheet."""

    column: str  # referring column, e.g. city_id
    sheet: str  # lookup sheet, e.g. cities
    key: str  # its key column
    label: str | None  # its name column (None when it only chains on)
    attribute: str  # the resulting attribute, e.g. city
    table: str  # backend table holding the deduplicated lookup
    unresolved: int = 0  # non-empty keys the sheet does not have


@dataclass
class Activity:
    """The workbook's coupon-transaction sheet, loaded into ``raw_coupons`` and typed as ``coupons_typed``."""

    sheet: str
    raw_rows: int
    columns: dict[str, str]  # canonical role -> source column (customer_id, ts, status, coupon, burn_ts, id)
    categorical: list[Attribute]
    lookups: list[Lookup]

    def has(self, role: str) -> bool:
        return role in self.columns


@dataclass
class CustomersIngest:
    """Facts about the customer table that was read; the data is in ``raw_customers``/``customers_typed``."""

    files: list[Path]
    file_facts: list[dict[str, Any]]
    sheet: str | None
    raw_rows: int
    rejected_lines: int
    id_column: str
    attributes: list[Attribute]
    lookups: list[Lookup]
    skipped: dict[str, str]
    activity: Activity | None
    notes: list[str] = field(default_factory=list)

    @property
    def input_rows(self) -> int:
        return self.raw_rows + self.rejected_lines

    @property
    def origin(self) -> str:
        names = ", ".join(f.name for f in self.files[:2]) + (" …" if len(self.files) > 2 else "")
        return f"{names} sheet '{self.sheet}'" if self.sheet else names

    def attribute(self, name: str) -> Attribute:
        return next(a for a in self.attributes if a.name == name)

    def summary(self) -> dict[str, Any]:
        return {
            "files": self.file_facts,
            "sheet": self.sheet,
            "input_rows": self.input_rows,
            "id_column": self.id_column,
            "attributes": {a.name: {"kind": a.kind, "source": a.source, "lookup": a.lookup} for a in self.attributes},
            "lookups": [
                {"column": lk.column, "sheet": lk.sheet, "label": lk.label, "unresolved": lk.unresolved}
                for lk in self.lookups
            ],
            "skipped": self.skipped,
            "activity": None
            if self.activity is None
            else {"sheet": self.activity.sheet, "rows": self.activity.raw_rows, "columns": self.activity.columns},
            "notes": self.notes,
        }


# ------------------------------------------------------------------------------------------ workbook structure


@dataclass
class _Sheet:
    name: str
    table: pa.Table
    key: str | None  # nearly unique *_id column

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names)


def workbook_sheets(path: Path) -> dict[str, pa.Table]:
    """Every non-empty sheet of a workbook as an all-text Arrow table (header row = column names)."""
    from python_calamine import CalamineWorkbook

    from shopseg.ingest.readers import read_excel

    try:
        names = list(CalamineWorkbook.from_path(str(path)).sheet_names)
    except Exception as exc:  # calamine raises its own error types
        raise DataError(f"cannot read Excel workbook '{path}': {exc}") from None
    out: dict[str, pa.Table] = {}
    for name in names:
        try:
            out[name] = read_excel(path, name)
        except DataError:
            continue  # an empty sheet
    return out


def _is_key(table: pa.Table, col: str) -> bool:
    values = table.column(col).drop_null()
    n = len(values)
    return n > 0 and len(pc.unique(values)) >= _KEY_UNIQUE * n


def _key_column(table: pa.Table) -> str | None:
    for c in table.column_names:
        if normalize_name(c).endswith("id") and _is_key(table, c):
            return str(c)
    return None


def _is_customer_id(name: str) -> bool:
    n = normalize_name(name)
    return n in (normalize_name("customer_id"), *column("customer_id").synonyms)


def _customer_sheet(sheets: dict[str, _Sheet], wanted: str | None, path: Path) -> _Sheet:
    if wanted is not None:
        if wanted not in sheets:
            near = closest(wanted, list(sheets))
            hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            raise SchemaError(
                f"sheet '{wanted}' (given as [customers] sheet) not found in '{path}'{hint} Its sheets are "
                f"{list(sheets)}"
            )
        return sheets[wanted]
    for s in sheets.values():
        if normalize_name(s.name) in CUSTOMER_SHEETS:
            return s
    for s in sheets.values():
        if s.key is not None and _is_customer_id(s.key):
            return s
    raise SchemaError(
        f"no customer sheet found in '{path}' (sheets: {list(sheets)}): expected a sheet named like 'customers' or "
        "one whose first unique id column is a customer id. Name it with [customers] sheet = 'NAME'"
    )


def _lookup_for(col: str, owner: str, sheets: dict[str, _Sheet], exclude: set[str]) -> _Sheet | None:
    """The sheet whose key column has the name of ``col`` (compared normalised), if any."""
    n = normalize_name(col)
    if not n.endswith("id"):
        return None
    for s in sheets.values():
        if s.name == owner or s.name in exclude or s.key is None:
            continue
        if normalize_name(s.key) == n and len(s.columns) >= 2:
            return s
    return None


def _label_column(sheet: _Sheet, sheets: dict[str, _Sheet], exclude: set[str]) -> str | None:
    """The lookup's name column: a non-key text column, one named like *name* first."""
    assert sheet.key is not None
    cands = [
        c
        for c in sheet.columns
        if c != sheet.key and _lookup_for(c, sheet.name, sheets, exclude) is None and not _mostly_numeric(sheet, c)
    ]
    for c in cands:
        if any(h in normalize_name(c) for h in _LABEL_HINTS):
            return c
    return cands[0] if cands else None


def _mostly_numeric(sheet: _Sheet, col: str) -> bool:
    values = sheet.table.column(col).drop_null()
    if len(values) == 0:
        return False
    ok = sum(1 for v in values.to_pylist() if re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", str(v)))
    return ok >= 0.95 * len(values)


def _stem(col: str) -> str:
    s = re.sub(r"[\s_\-]*id$", "", col.strip(), flags=re.IGNORECASE)
    return s or col


def is_customer_workbook(path: str | Path) -> bool:
    """True for an Excel workbook that holds a customer sheet and no order lines with prices (e.g. the coupon
    workbook): such a file is the run's customer source (and its activity sheet the activity), not orders."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() not in EXCEL_SUFFIXES:
        return False
    try:
        tables = workbook_sheets(p)
    except DataError:
        return False
    sheets = {n: _Sheet(n, t, _key_column(t)) for n, t in tables.items()}
    try:
        _customer_sheet(sheets, None, p)
    except SchemaError:
        return False
    prices = {normalize_name("unit_price"), normalize_name("amount")}
    prices |= set(column("unit_price").synonyms) | set(column("amount").synonyms)
    return not any(normalize_name(c) in prices for t in tables.values() for c in t.column_names)


# ------------------------------------------------------------------------------------------ ingest


def ingest_customers(
    backend: DuckDBBackend,
    inputs: Sequence[str | Path],
    cfg: CustomersConfig | None = None,
    *,
    work: Path | None = None,
) -> CustomersIngest:
    """Read the customer table into ``raw_customers`` and expose the typed view ``customers_typed``
    (``_row_id, _source, customer_id`` + attributes); a workbook's lookup sheets are resolved to names and its
    activity sheet is loaded into ``raw_coupons`` / ``coupons_typed``."""
    cfg = cfg or CustomersConfig()
    files = expand_inputs(inputs)
    work = work or Path(".shopseg-work")
    notes: list[str] = []
    excel = [f for f in files if file_kind(f) == "excel"]
    sheets: dict[str, _Sheet] = {}
    main_sheet: str | None = None
    if excel:
        if len(files) > 1:
            raise SchemaError(
                f"a customer workbook must be the only customer file; got {len(files)} files "
                f"({', '.join(str(f) for f in files[:3])})"
            )
        tables = workbook_sheets(excel[0])
        if not tables:
            raise DataError(f"Excel workbook '{excel[0]}' has no sheet with data")
        sheets = {n: _Sheet(n, t, _key_column(t)) for n, t in tables.items()}
        main = _customer_sheet(sheets, cfg.sheet, excel[0])
        main_sheet = main.name
        backend.create_table(
            RAW, main.table.append_column("_source", pa.array([f"{excel[0]} [{main.name}]"] * main.table.num_rows))
        )
        backend.execute(
            f"CREATE OR REPLACE TABLE {RAW}_rejects (_source VARCHAR, line BIGINT, csv_line VARCHAR, error VARCHAR)"
        )
        raw_rows, rejected = main.table.num_rows, 0
        facts: list[dict[str, Any]] = [{"path": str(excel[0]), "format": "excel", "sheet": main.name}]
        source_cols = main.columns
    else:
        load = load_raw(backend, files, RAW, work=work)
        raw_rows, rejected, facts, source_cols = load.rows, load.rejected, load.files, load.columns
        notes += load.notes
    id_col = _id_column(source_cols, cfg.id_column, sheets.get(main_sheet) if main_sheet else None)
    types = dict(backend.columns(RAW))
    ignore = {normalize_name(c) for c in cfg.ignore}
    exclude = {main_sheet} if main_sheet else set()
    attributes: list[Attribute] = []
    exprs: list[str] = []
    joins: list[str] = []
    lookups: list[Lookup] = []
    skipped: dict[str, str] = {}
    forced_cat = {normalize_name(c) for c in cfg.categorical}
    plain: list[str] = []
    for c in source_cols:
        if c == id_col or normalize_name(c) in ignore:
            if c != id_col:
                skipped[c] = "ignored ([customers] ignore)"
            continue
        target = _lookup_for(c, main_sheet or "", sheets, exclude) if (sheets and cfg.resolve_lookups) else None
        if target is not None:
            made = _resolve(backend, "r", c, target, sheets, exclude, joins, prefix="lk_c")
            for attr, expr, lk in made:
                attributes.append(attr)
                exprs.append(f"{expr} AS {quote(attr.name)}")
                lookups.append(lk)
            continue
        plain.append(c)
    kinds = _classify(backend, RAW, plain, types, forced_cat, skipped)
    for c, (kind, expr) in kinds.items():
        attributes.append(Attribute(c, kind, c))
        exprs.append(f"{_aliased(expr, 'r')} AS {quote(c)}")
    _check_unique_names(attributes, id_col)
    cust = _aliased(id_expr(id_col, types[id_col]), "r")
    select = ", ".join(["r.rowid + 1 AS _row_id", "r._source", f"{cust} AS customer_id", *exprs])
    backend.execute(f"CREATE OR REPLACE VIEW {TYPED} AS SELECT {select} FROM {RAW} r " + " ".join(joins))
    lookups = [_count_unresolved(backend, TYPED, lk) for lk in lookups]
    for lk in lookups:
        if lk.unresolved:
            notes.append(
                f"{lk.unresolved} customer row(s) have a {lk.column} that sheet '{lk.sheet}' does not list; "
                f"their {lk.attribute} is left empty"
            )
    if not backend.scalar(f"SELECT count(customer_id) FROM {TYPED}"):
        raise DataError(
            f"no customer ids at all in the customer table: column '{id_col}' is empty in every row; "
            "set the id column with [customers] id_column = 'NAME'"
        )
    activity = None
    if sheets and (cfg.activity_sheet or "").lower() != "none":
        activity = _ingest_activity(backend, sheets, main_sheet or "", id_col, cfg, notes, source=str(files[0]))
    return CustomersIngest(
        files, facts, main_sheet, raw_rows, rejected, id_col, attributes, lookups, skipped, activity, notes
    )


def _id_column(cols: list[str], wanted: str | None, sheet: _Sheet | None) -> str:
    if wanted is not None:
        if wanted not in cols:
            near = closest(wanted, cols)
            hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
            raise SchemaError(
                f"column '{wanted}' (given as [customers] id_column) not found in the customer table{hint} "
                f"Its columns are: {', '.join(cols)}"
            )
        return wanted
    syn = (normalize_name("customer_id"), *column("customer_id").synonyms, "id")
    for s in syn:
        hit = next((c for c in cols if normalize_name(c) == s), None)
        if hit is not None:
            return hit
    if sheet is not None and sheet.key is not None:
        return sheet.key
    raise SchemaError(
        f"no customer id column found in the customer table (columns: {', '.join(cols)}); set it with "
        "[customers] id_column = 'NAME'"
    )


def _check_unique_names(attributes: list[Attribute], id_col: str) -> None:
    seen: set[str] = {"customer_id", id_col}
    for a in attributes:
        if a.name in seen:
            raise SchemaError(
                f"two customer attributes would both be called '{a.name}'; leave one out with [customers] ignore"
            )
        seen.add(a.name)


def _load_lookup(backend: DuckDBBackend, sheet: _Sheet, table: str) -> None:
    """The lookup sheet as a table keyed by the normalised key (duplicates: the first row wins)."""
    assert sheet.key is not None
    name = f"__lk_{abs(hash(table))}"
    backend.register(name, sheet.table)
    try:
        key = id_expr(sheet.key)
        others = [c for c in sheet.columns if c != sheet.key]
        sel = ", ".join(f"first({quote(c)} ORDER BY rn) AS {quote(c)}" for c in others)
        backend.execute(
            f"CREATE OR REPLACE TABLE {quote(table)} AS SELECT {key} AS _key, {sel} FROM "
            f"(SELECT *, row_number() OVER () AS rn FROM {quote(name)}) WHERE {key} IS NOT NULL GROUP BY 1"
        )
    finally:
        backend.con.unregister(name)


def _resolve(
    backend: DuckDBBackend,
    alias: str,
    col: str,
    target: _Sheet,
    sheets: dict[str, _Sheet],
    exclude: set[str],
    joins: list[str],
    *,
    prefix: str,
    depth: int = 0,
) -> list[tuple[Attribute, str, Lookup]]:
    """LEFT JOINs that resolve ``alias.col`` through ``target`` (and chains from it); returns the attributes."""
    assert target.key is not None
    table = f"{prefix}_{len(joins)}_{re.sub(r'[^0-9a-zA-Z]', '_', target.name)}"
    _load_lookup(backend, target, table)
    la = f"l{len(joins)}{prefix[-1]}"
    joins.append(f"LEFT JOIN {quote(table)} {la} ON {la}._key = {_aliased(id_expr(col), alias)}")
    inner = exclude | {target.name}
    label = _label_column(target, sheets, inner)
    out: list[tuple[Attribute, str, Lookup]] = []
    lk = Lookup(col, target.name, target.key, label, _stem(col), table)
    if label is not None:
        out.append(
            (
                Attribute(_stem(col), "categorical", col, f"{target.name}.{label}"),
                _aliased(text_expr(label), la),
                lk,
            )
        )
    else:
        # no name of its own: keep the id itself as a category
        out.append((Attribute(_stem(col), "categorical", col), _aliased(id_expr(col), alias), lk))
    if depth < _MAX_CHAIN:
        for c in target.columns:
            if c in (target.key, label):
                continue
            nxt = _lookup_for(c, target.name, sheets, inner)
            if nxt is not None:
                out += _resolve(backend, la, c, nxt, sheets, inner, joins, prefix=prefix, depth=depth + 1)
    return out


def _count_unresolved(backend: DuckDBBackend, view: str, lk: Lookup) -> Lookup:
    raw = RAW if view == TYPED else RAW_ACTIVITY
    if lk.label is None or lk.column not in dict(backend.columns(raw)):
        return lk  # chained lookups are counted at their first link
    n = backend.scalar(
        f"SELECT count(*) FROM {view} WHERE {quote(lk.attribute)} IS NULL AND _row_id IN ("
        f"SELECT rowid + 1 FROM {raw} "
        f"WHERE NULLIF(trim(CAST({quote(lk.column)} AS VARCHAR)), '') IS NOT NULL)"
    )
    return Lookup(lk.column, lk.sheet, lk.key, lk.label, lk.attribute, lk.table, int(n or 0))


def _classify(
    backend: DuckDBBackend,
    table: str,
    cols: list[str],
    types: dict[str, str],
    forced_cat: set[str],
    skipped: dict[str, str],
) -> dict[str, tuple[str, str]]:
    """Kind and typing SQL of each plain column: numeric, date or categorical (identifier-like text is skipped)."""
    if not cols:
        return {}
    parts = []
    for c in cols:
        q = f"NULLIF(trim(CAST({quote(c)} AS VARCHAR)), '')"
        parts.append(
            f"count({q}), count(DISTINCT {q}), count({number_expr(c, 'VARCHAR', False)}) "
            f"FILTER (WHERE regexp_full_match({q}, '{_NUMBER_RE}'))"
        )
    row = backend.con.execute(f"SELECT count(*), {', '.join(parts)} FROM {quote(table)}").fetchall()[0]
    assert row is not None
    out: dict[str, tuple[str, str]] = {}
    for i, c in enumerate(cols):
        n, distinct, numeric = (int(row[1 + 3 * i + j] or 0) for j in range(3))
        t = types[c].upper()
        norm = normalize_name(c)
        if n == 0:
            skipped[c] = "empty in every row"
            continue
        if norm in forced_cat or norm.endswith("id") or t == "BOOLEAN":
            out[c] = ("categorical", _cat_expr(c, t))
            continue
        if t.startswith(("TIMESTAMP", "DATE")):
            out[c] = ("date", ts_expr(c, t, None))
            continue
        if t != "VARCHAR" and numeric >= 0.95 * n:
            out[c] = ("numeric", number_expr(c, t, False))
            continue
        if t == "VARCHAR":
            fmt = detect_date_format(backend, table, c, t)
            parsed = 0
            if fmt is not None and numeric < 0.95 * n:
                parsed = int(
                    backend.scalar(
                        f"SELECT count({ts_expr(c, t, fmt)}) FROM {quote(table)} "
                        f"WHERE NULLIF(trim(CAST({quote(c)} AS VARCHAR)), '') IS NOT NULL"
                    )
                    or 0
                )
            if parsed >= 0.95 * n:
                out[c] = ("date", ts_expr(c, t, fmt))
                continue
            if numeric >= 0.95 * n:
                out[c] = ("numeric", number_expr(c, t, False))
                continue
        if distinct > _IDENTIFIER_SHARE * n and distinct > 50:
            skipped[c] = f"identifies individuals ({distinct:,} distinct values in {n:,} rows), not a segment trait"
            continue
        out[c] = ("categorical", _cat_expr(c, t))
    return out


def _cat_expr(c: str, t: str) -> str:
    if t in ("DOUBLE", "FLOAT", "REAL") or t.startswith("DECIMAL") or "INT" in t:
        return id_expr(c, t)
    return text_expr(c)


# ------------------------------------------------------------------------------------------ activity sheet


def _activity_sheet(
    sheets: dict[str, _Sheet], main: str, id_col: str, wanted: str | None, exclude: set[str]
) -> _Sheet | None:
    if wanted is not None:
        if wanted not in sheets:
            raise SchemaError(
                f"sheet '{wanted}' (given as [customers] activity_sheet) not found; the sheets are {list(sheets)}"
            )
        return sheets[wanted]
    n_id = normalize_name(id_col)
    cands = []
    for s in sheets.values():
        if s.name == main or s.name in exclude:
            continue
        cid = next((c for c in s.columns if normalize_name(c) == n_id or _is_customer_id(c)), None)
        if cid is None or _is_key(s.table, cid):
            continue
        if _date_column(s) is None:
            continue
        cands.append(s)
    cands.sort(key=lambda s: (normalize_name(s.name) not in ACTIVITY_SHEETS, list(sheets).index(s.name)))
    return cands[0] if cands else None


def _date_column(s: _Sheet) -> str | None:
    ts_syn = (normalize_name("ts"), *column("ts").synonyms)
    cols = [c for c in s.columns if not any(h in normalize_name(c) for h in _BURN_HINTS)]
    for syn in ts_syn:
        hit = next((c for c in cols if normalize_name(c) == syn), None)
        if hit is not None:
            return hit
    return next((c for c in cols if "date" in normalize_name(c) or "time" in normalize_name(c)), None)


def _ingest_activity(
    backend: DuckDBBackend,
    sheets: dict[str, _Sheet],
    main: str,
    id_col: str,
    cfg: CustomersConfig,
    notes: list[str],
    *,
    source: str,
) -> Activity | None:
    lookup_sheets = {s.name for s in sheets.values() if s.key is not None and s.name != main and _referenced(s, sheets)}
    sheet = _activity_sheet(sheets, main, id_col, cfg.activity_sheet, lookup_sheets)
    if sheet is None:
        return None
    t = sheet.table
    origin = f"{source} [{sheet.name}]"
    backend.create_table(RAW_ACTIVITY, t.append_column("_source", pa.array([origin] * t.num_rows)))
    n_id = normalize_name(id_col)
    cols = sheet.columns
    roles: dict[str, str] = {}
    roles["customer_id"] = next(c for c in cols if normalize_name(c) == n_id or _is_customer_id(c))
    date_col = _date_column(sheet)
    assert date_col is not None
    roles["ts"] = date_col
    if sheet.key is not None and sheet.key != roles["customer_id"]:
        roles["id"] = sheet.key
    for names, role in ((_STATUS_NAMES, "status"), (_COUPON_NAMES, "coupon")):
        hit = next((c for c in cols if normalize_name(c) in names and c not in roles.values()), None)
        if hit is not None:
            roles[role] = hit
    burn = next((c for c in cols if c not in roles.values() and any(h in normalize_name(c) for h in _BURN_HINTS)), None)
    if burn is not None:
        roles["burn_ts"] = burn
    types = dict(backend.columns(RAW_ACTIVITY))
    exprs = {
        "customer_id": id_expr(roles["customer_id"], types[roles["customer_id"]]),
        "ts": ts_expr(
            roles["ts"], types[roles["ts"]], detect_date_format(backend, RAW_ACTIVITY, roles["ts"], types[roles["ts"]])
        ),
        "event_id": id_expr(roles["id"], types[roles["id"]]) if "id" in roles else "CAST(NULL AS VARCHAR)",
        "status": f"lower({text_expr(roles['status'])})" if "status" in roles else "CAST(NULL AS VARCHAR)",
        "coupon": text_expr(roles["coupon"]) if "coupon" in roles else "CAST(NULL AS VARCHAR)",
        "burn_ts": ts_expr(
            roles["burn_ts"],
            types[roles["burn_ts"]],
            detect_date_format(backend, RAW_ACTIVITY, roles["burn_ts"], types[roles["burn_ts"]]),
        )
        if "burn_ts" in roles
        else "CAST(NULL AS TIMESTAMP)",
    }
    select = [f"{_aliased(e, 'a')} AS {k}" for k, e in exprs.items()]
    joins: list[str] = []
    cats: list[Attribute] = []
    lookups: list[Lookup] = []
    exclude = {main, sheet.name}
    if cfg.resolve_lookups:
        for c in cols:
            if c in roles.values():
                continue
            target = _lookup_for(c, sheet.name, sheets, exclude)
            if target is None:
                continue
            for attr, expr, lk in _resolve(backend, "a", c, target, sheets, exclude, joins, prefix="lk_a"):
                if attr.name in exprs or any(a.name == attr.name for a in cats):
                    continue
                cats.append(attr)
                lookups.append(lk)
                select.append(f"{expr} AS {quote(attr.name)}")
    backend.execute(
        f"CREATE OR REPLACE VIEW {TYPED_ACTIVITY} AS SELECT a.rowid + 1 AS _row_id, a._source, {', '.join(select)} "
        f"FROM {RAW_ACTIVITY} a " + " ".join(joins)
    )
    found = ", ".join(f"{v} → {k}" for k, v in roles.items())
    notes.append(
        f"sheet '{sheet.name}' read as the customers' coupon activity ({t.num_rows:,} rows; {found}"
        + (f"; names resolved: {', '.join(a.name for a in cats)}" if cats else "")
        + ")"
    )
    return Activity(sheet.name, t.num_rows, roles, cats, lookups)


def _aliased(expr: str, alias: str) -> str:
    """Prefix the quoted column names of a typing expression with a table alias."""
    return re.sub(r'(?<![.\w])"((?:[^"]|"")+)"', lambda m: f"{alias}.{m.group(0)}", expr)


def _referenced(s: _Sheet, sheets: dict[str, _Sheet]) -> bool:
    """Whether another sheet has a column named like this sheet's key (it is a lookup sheet)."""
    assert s.key is not None
    n = normalize_name(s.key)
    return any(o.name != s.name and any(normalize_name(c) == n for c in o.columns) for o in sheets.values())
