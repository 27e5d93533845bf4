"""Readers: find the input files, sniff CSV encoding/delimiter/header, and load everything into one raw table.

Sniffing happens here; the backend's engine reads the files (:class:`~shopseg.backends.base.RawPlan`).
CSV values are all read as text, so nothing is lost to a failed cast; malformed lines are kept in a rejects
table and quarantined. Text that is not UTF-8 is transcoded once into the run's work folder, as is text
separated by runs of spaces. Excel is read with python-calamine. Parquet keeps its types.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import glob
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from shopseg.backends.base import Backend, CsvGroup, RawPlan, unreserved
from shopseg.errors import BackendError, DataError, InputError

log = logging.getLogger(__name__)

CSV_SUFFIXES = {".csv", ".txt", ".tsv", ".dat", ".psv"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm", ".xls", ".xlsb", ".ods"}
COMPRESSED = {".gz", ".zst", ".bz2"}
SUPPORTED = CSV_SUFFIXES | PARQUET_SUFFIXES | EXCEL_SUFFIXES

_SNIFF_BYTES = 256 * 1024
#: Encodings considered once UTF-8 fails: the Windows/ISO code pages and East Asian encodings that exports
#: are written in. DOS and Mac code pages are left out: on a few accented bytes they often fit as well as
#: cp1252 and would turn '£' and '“' into other letters.
_CANDIDATE_ENCODINGS: tuple[str, ...] = (
    *("cp1252", "latin_1", "iso8859_15", "cp1250", "iso8859_2", "cp1257", "cp1254", "iso8859_9"),  # Latin
    *("cp1251", "koi8_r", "iso8859_5", "cp1253", "iso8859_7", "cp1255", "cp1256", "cp1258", "cp874"),
    *("utf_16", "shift_jis", "cp932", "euc_jp", "gb18030", "big5", "euc_kr", "cp949"),
)
_DELIMITERS = (",", ";", "\t", "|")


def file_kind(path: Path) -> str:
    """'csv', 'parquet' or 'excel', from the suffix (compressed CSV allowed)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    suffix = suffixes[-1] if suffixes else ""
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in EXCEL_SUFFIXES:
        return "excel"
    if suffix in CSV_SUFFIXES or suffix == "":
        return "csv"
    raise InputError(
        f"'{path}' has an unsupported file type '{suffix}'; shopseg reads CSV (.csv .txt .tsv, optionally .gz), "
        "Parquet (.parquet) and Excel (.xlsx)"
    )


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files, folders (every supported file inside, sorted) and glob patterns → a sorted list of files."""
    if not inputs:
        raise InputError("no input given; pass one or more files, a folder or a glob such as 'data/*.csv'")
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and _supported(f))
            if not files:
                raise InputError(f"folder '{p}' holds no CSV, Parquet or Excel file")
            found.extend(files)
        elif p.is_file():
            found.append(p)
        elif any(ch in str(item) for ch in "*?["):
            files = sorted(Path(f) for f in glob.glob(str(item), recursive=True) if Path(f).is_file())
            if not files:
                raise InputError(f"the pattern '{item}' matches no file")
            found.extend(files)
        else:
            raise InputError(f"input '{item}' does not exist; check the path (folders and globs work too)")
    seen: set[Path] = set()
    unique = []
    for f in found:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique


def _supported(f: Path) -> bool:
    if f.name.startswith("."):
        return False
    try:
        file_kind(f)
    except InputError:
        return False
    suffixes = [s.lower() for s in f.suffixes]
    return bool(suffixes) and (suffixes[-1] in SUPPORTED or (len(suffixes) > 1 and suffixes[-2] in SUPPORTED))


# --------------------------------------------------------------------------------------------- CSV sniffing


def _open_binary(path: Path) -> io.BufferedIOBase:
    suffix = path.suffix.lower()
    if suffix == ".gz":
        import gzip

        return gzip.open(path, "rb")  # type: ignore[return-value]
    if suffix == ".bz2":
        import bz2

        return bz2.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def detect_encoding(path: Path) -> str:
    """'utf-8' when the whole file decodes as UTF-8; else charset-normalizer's guess from the lines that hold
    non-ASCII bytes (a file that is ASCII but for a few Latin-1 bytes is read as cp1252/latin-1)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    head = b""
    with _open_binary(path) as fh:
        try:
            while chunk := fh.read(8 * 1024 * 1024):
                if not head:
                    head = chunk[:_SNIFF_BYTES]
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
            return "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
        except UnicodeDecodeError:
            pass
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    sample = bytearray()
    with _open_binary(path) as fh:
        for line in fh:
            if any(b > 0x7F for b in line):
                sample += line
                if len(sample) > 64 * 1024:
                    break
    from charset_normalizer import from_bytes

    matches = from_bytes(bytes(sample) or head, cp_isolation=list(_CANDIDATE_ENCODINGS))
    best = matches.best()
    if best is None:
        raise DataError(
            f"cannot tell the text encoding of '{path}'; it may be binary. Set it with --encoding (e.g. latin-1)"
        )
    enc = str(best.encoding).lower().replace("-", "_")
    # A few accented letters or a '£' fit several code pages equally well (charset-normalizer then ranks
    # cp1250 first and '£' becomes 'Ł'); on such a tie a Western export is far more likely.
    western = {"cp1252", "windows_1252", "latin_1", "iso8859_1", "iso_8859_1"}
    if any(str(m.encoding).lower().replace("-", "_") in western and m.chaos <= best.chaos for m in matches):
        enc = "cp1252"
    if enc in ("ascii", "utf_8", "cp1252", "latin_1", "iso8859_1", "iso_8859_1"):
        # what remains once UTF-8 failed on a mostly-ASCII Western export: Windows-1252 (a superset of
        # Latin-1's printable characters), unless bytes undefined in cp1252 occur
        undefined = {0x81, 0x8D, 0x8F, 0x90, 0x9D}
        return "latin-1" if any(b in undefined for b in sample) else "cp1252"
    return enc


@dataclass
class CsvDialect:
    encoding: str
    delimiter: str  # one character, or "\\s+" for runs of whitespace
    header: bool
    first_line: list[str] = field(default_factory=list)


def _looks_like_value(token: str) -> bool:
    t = token.strip().strip('"')
    return bool(re.fullmatch(r"[-+]?[\d.,/:\- ]+", t)) and any(ch.isdigit() for ch in t)


def sniff_csv(path: Path, encoding: str | None, delimiter: str | None, header: bool | None) -> CsvDialect:
    """Detect encoding, delimiter and whether the first line is a header."""
    enc = encoding or detect_encoding(path)
    with _open_binary(path) as fh:
        raw = fh.read(_SNIFF_BYTES)
    try:
        text = raw.decode(enc, errors="replace")
    except LookupError:
        raise InputError(f"unknown encoding '{enc}'; use a Python codec name such as utf-8 or latin-1") from None
    lines = [ln for ln in text.splitlines()[:50] if ln.strip()]
    if len(raw) == _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last one may be cut
    if not lines:
        raise DataError(f"'{path}' is empty: no header and no rows")
    delim = delimiter or _detect_delimiter(lines)
    if delim == "\\s+":
        first = lines[0].split()
    else:
        first = next(csv.reader([lines[0]], delimiter=delim))
    has_header = header if header is not None else not all(_looks_like_value(t) for t in first if t.strip())
    return CsvDialect(enc, delim, has_header, first)


def _detect_delimiter(lines: list[str]) -> str:
    best, best_score = ",", -1.0
    for d in _DELIMITERS:
        counts = [len(next(csv.reader([ln], delimiter=d))) for ln in lines]
        if counts[0] <= 1:
            continue
        consistent = sum(c == counts[0] for c in counts) / len(counts)
        score = consistent * 1000 + counts[0]
        if score > best_score:
            best, best_score = d, score
    if best_score >= 0 and best_score >= 900:
        return best
    ws = [len(ln.split()) for ln in lines]
    if ws[0] > 1 and sum(c == ws[0] for c in ws) / len(ws) >= 0.9:
        return "\\s+"
    return best if best_score >= 0 else ","


def _transcode(path: Path, dialect: CsvDialect, work: Path, *, one_line_ending: bool = False) -> Path:
    """Rewrite a file as UTF-8 into the work folder, streaming: whitespace runs as tabs (for a ``\\s+``
    dialect), and with ``one_line_ending`` CRLF and a lone CR as LF (universal newlines, inside quoted fields
    too)."""
    work.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^0-9A-Za-z_.-]", "_", path.name)
    out = work / f"{abs(hash(str(path.resolve())))}_{stem}.{'lf' if one_line_ending else 'utf8'}.csv"
    newline = None if one_line_ending else ""  # None: universal newlines
    with _open_binary(path) as fb, out.open("w", encoding="utf-8", newline="") as fo:
        reader = io.TextIOWrapper(fb, encoding=dialect.encoding, errors="replace", newline=newline)  # type: ignore[type-var,arg-type]
        if dialect.delimiter == "\\s+":
            for line in reader:
                fo.write("\t".join(line.split()) + "\n")
        else:
            while chunk := reader.read(4 * 1024 * 1024):
                fo.write(chunk)
    return out


def _partial_columns(plan: RawPlan) -> list[str]:
    """Notes for columns that only some input files have: the files are united by column name, so those
    columns are empty on the other files' rows (which the cleaning then judges, e.g. as missing customers)."""
    import pyarrow.parquet as pq

    have: list[tuple[Path, set[str]]] = []
    for f in plan.parquet:
        have.append((f, set(pq.ParquetFile(f).schema_arrow.names)))
    for g in plan.csv:
        have += [(src, set(g.columns)) for src, _ in g.files]
    for f, data in plan.excel:
        have.append((f, set(data.column_names)))
    if len(have) < 2:
        return []
    every = sorted(set().union(*(c for _, c in have)))
    notes = []
    for col in every:
        lacking = [f.name for f, c in have if col not in c]
        if lacking:
            shown = ", ".join(lacking[:3]) + (f" and {len(lacking) - 3} more" if len(lacking) > 3 else "")
            notes.append(
                f"column '{col}' is missing from {len(lacking)} of {len(have)} input files ({shown}); it is empty "
                "on their rows"
            )
    return notes


def _one_line_ending(group: CsvGroup, work: Path) -> CsvGroup:
    """The group with every file to read rewritten with LF line endings (see :func:`_transcode`)."""
    files = []
    for source, target in group.files:
        # `target` is the input itself (UTF-8 or ASCII, maybe with a BOM) or already a UTF-8 copy
        enc = "utf-8-sig" if target == source else "utf-8"
        dialect = CsvDialect(enc, group.delimiter, group.header)
        files.append((source, _transcode(target, dialect, work, one_line_ending=True)))
    return CsvGroup(group.delimiter, group.header, group.columns, files)


# --------------------------------------------------------------------------------------------- loading


@dataclass
class RawLoad:
    """What was read: the raw table name, its columns, and per-file facts for the manifest."""

    table: str
    columns: list[str]
    rows: int
    rejected: int
    files: list[dict[str, Any]]
    notes: list[str]


def load_raw(
    backend: Backend,
    files: Sequence[Path],
    table: str,
    *,
    work: Path,
    encoding: str | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
    names: list[str] | None = None,
    sheet: str | None = None,
) -> RawLoad:
    """Load every file into ``table`` (+ ``_source``; a row's identity is ``rowid + 1``, in input order);
    malformed CSV lines go to ``<table>_rejects``.

    The files are sniffed here (encoding, delimiter, header, layout); the backend reads them
    (:meth:`~shopseg.backends.base.Backend.load_raw`) with the engine's own readers.
    """
    kinds = {file_kind(f) for f in files}
    plan = RawPlan(as_text=kinds != {"parquet"})
    notes: list[str] = []
    file_facts: list[dict[str, Any]] = []
    if names is not None and header is None:
        header = False
    for kind in ("parquet", "csv", "excel"):
        group = [f for f in files if file_kind(f) == kind]
        if not group:
            continue
        if kind == "parquet":
            plan.parquet += group
            for f in group:  # the engine renames these columns as it reads them (unreserved)
                with contextlib.suppress(OSError, ValueError):
                    names_in = pq.read_schema(f).names
                    for c in names_in:
                        _renamed(c, names_in, notes)
            file_facts += [{"path": str(f), "format": "parquet"} for f in group]
        elif kind == "csv":
            groups, facts = _csv_groups(group, work, encoding, delimiter, header, names, notes)
            plan.csv += groups
            file_facts += facts
        else:
            for f in group:
                data = read_excel(f, sheet)
                plan.excel.append(
                    (f, data.rename_columns([_renamed(c, data.column_names, notes) for c in data.column_names]))
                )
                file_facts.append({"path": str(f), "format": "excel", "sheet": sheet or "(first)"})
    try:
        rows, rejected = backend.load_raw(table, plan)
    except BackendError as exc:
        if not plan.csv or "CSV" not in str(exc):
            raise
        # DuckDB's CSV reader stops on a file that mixes line endings (CRLF and LF, e.g. exports appended to each
        # other on different systems); read copies with one line ending instead, found only when it happens
        plan.csv = [_one_line_ending(g, work) for g in plan.csv]
        rows, rejected = backend.load_raw(table, plan)
        notes.append("CSV lines end in both CRLF and LF; read from a copy with LF line endings only")
    cols = [c for c, _ in backend.columns(table) if c not in ("_row_id", "_source")]
    notes += _partial_columns(plan)
    if rows == 0 and rejected == 0:
        raise DataError(
            "the input has no data rows: " + ", ".join(str(f) for f in files[:3]) + (" …" if len(files) > 3 else "")
        )
    return RawLoad(table, cols, rows, rejected, file_facts, notes)


def _renamed(name: str, names: Sequence[str], notes: list[str]) -> str:
    """:func:`~shopseg.backends.base.unreserved` of an input column name, with a note when it changes it."""
    out = unreserved(name, names)
    if out != name:
        note = f"input column '{name}' read as '{out}': shopseg uses the name '{name.lower()}' itself"
        if note not in notes:
            notes.append(note)
    return out


def _csv_groups(
    group: Sequence[Path],
    work: Path,
    encoding: str | None,
    delimiter: str | None,
    header: bool | None,
    names: list[str] | None,
    notes: list[str],
) -> tuple[list[CsvGroup], list[dict[str, Any]]]:
    """The CSV files sniffed and grouped by layout (files that share a header); the groups are united by
    column name when loaded."""
    first = sniff_csv(group[0], encoding, delimiter, header)
    use_header = first.header
    if first.encoding not in ("utf-8", "utf-8-sig", "ascii"):
        notes.append(f"CSV text encoding detected as {first.encoding}; transcoded to UTF-8")
    if first.delimiter == "\\s+":
        notes.append("columns separated by runs of spaces; read as such")
    if not use_header and names is None:
        names = [f"column{i}" for i in range(len(first.first_line))]
        notes.append("the CSV has no header line; columns are guessed from their values")
    by_layout: dict[tuple[str, tuple[str, ...]], list[tuple[Path, Path]]] = {}
    facts: list[dict[str, Any]] = []
    for f in group:
        d = (
            first
            if f == group[0]
            else sniff_csv(f, encoding, first.delimiter if delimiter is None else delimiter, use_header)
        )
        if delimiter is None and len(d.first_line) <= 1 < len(first.first_line):
            # the first file's delimiter does not split this file at all (';' next to ','): detect its own
            d = sniff_csv(f, encoding, None, use_header)
        needs = d.encoding not in ("utf-8", "utf-8-sig", "ascii") or d.delimiter == "\\s+"
        target = _transcode(f, d, work) if needs else f
        if use_header:
            cols = [c.strip().lstrip("\ufeff") or f"column{i}" for i, c in enumerate(d.first_line)]
        else:
            assert names is not None
            if len(names) != len(d.first_line):
                raise InputError(
                    f"{len(names)} column names given for '{f}', which has {len(d.first_line)} columns "
                    f"({d.first_line}); give one name per column with --names"
                )
            cols = list(names)
        deduped: list[str] = []
        for c in cols:
            c = _renamed(c, cols, notes)
            while c in deduped:
                c += "_"
            deduped.append(c)
        layout = tuple(deduped)
        by_layout.setdefault((d.delimiter, layout), []).append((f, target))
        facts.append(
            {
                "path": str(f),
                "format": "csv",
                "encoding": d.encoding,
                "delimiter": d.delimiter,
                "header": use_header,
            }
        )
    if len(by_layout) > 1:
        notes.append(f"the CSV files come in {len(by_layout)} column layouts; combined by column name")
    groups = [
        # runs of spaces were transcoded to tabs
        CsvGroup("\t" if file_delim == "\\s+" else file_delim, use_header, layout, pairs)
        for (file_delim, layout), pairs in by_layout.items()
    ]
    return groups, facts


def read_excel(path: Path, sheet: str | None = None) -> pa.Table:
    """Read one sheet (the first by default) of a workbook into an all-text Arrow table."""
    from python_calamine import CalamineWorkbook

    try:
        wb = CalamineWorkbook.from_path(str(path))
    except Exception as exc:  # calamine raises its own error types
        raise DataError(f"cannot read Excel workbook '{path}': {exc}") from None
    names = list(wb.sheet_names)
    if not names:
        raise DataError(f"Excel workbook '{path}' has no sheets")
    if sheet is None:
        chosen = names[0]
    elif sheet in names:
        chosen = sheet
    else:
        raise InputError(f"sheet '{sheet}' not found in '{path}'; its sheets are {names}; set it with --sheet")
    rows = wb.get_sheet_by_name(chosen).to_python(skip_empty_area=True)
    if not rows:
        raise DataError(f"sheet '{chosen}' of '{path}' is empty")
    head = [str(h).strip() if h not in (None, "") else f"column{i}" for i, h in enumerate(rows[0])]
    body = rows[1:]
    columns: dict[str, list[str | None]] = {}
    for i, h in enumerate(head):
        name = h
        while name in columns:
            name += "_"
        columns[name] = [_cell_text(r[i]) if i < len(r) else None for r in body]
    return pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()})


def _cell_text(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
