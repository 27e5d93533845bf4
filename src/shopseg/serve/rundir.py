"""A finished run folder as the API, the dashboard and the exports read it.

The run's DuckDB file is opened **read-only** (several processes may read one run at once; a run that is
still being written cannot be opened and says so). Small tables (profiles, per-segment products) and the
per-customer lookups (segments, recommendations) are loaded into memory once, so a lookup costs a dictionary
access; everything else runs as SQL on a cursor of its own, which makes one :class:`RunData` safe to share
between the threads of a web server.

New customers are scored with the library's own steps: their order lines go through ingest, clean and the
feature SQL on a private in-memory DuckDB, then the run's saved segmenter assigns a segment.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import duckdb
import numpy as np
import pandas as pd
import pydantic_core

from shopseg.backends.duckdb import DuckDBBackend, quote
from shopseg.errors import BackendError, ConfigError, DataError, InputError, NotFoundError, ShopsegError

__all__ = [
    "RunData",
    "ScoreJob",
    "ScoreResult",
    "json_bytes",
    "json_value",
    "open_run_db",
    "run_id",
    "save_upload",
]

DB_NAME = "shopseg.duckdb"
MANIFEST = "manifest.json"
#: columns of the segments table that are not customer features
ID_COLUMNS = ("customer_id", "segment", "segment_name", "action")
#: the most order lines one scoring call takes (the API's limit; the library accepts what it is given)
MAX_SCORE_ROWS = 10_000
#: customer lookups whose JSON body is kept once made (about 1-3 KB each)
LOOKUP_CACHE = 200_000
#: runs of up to this many customers have every lookup's body made at start-up
LOOKUP_PRECOMPUTE = 50_000


class _Segmenter(Protocol):
    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...


def json_value(v: Any) -> Any:
    """A value as JSON can hold it: NaN/inf become None, numpy scalars plain numbers, times ISO 8601 text."""
    if v is None:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, pd.Timestamp):
        return None if pd.isna(v) else v.isoformat()
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, np.datetime64):
        return None if np.isnat(v) else pd.Timestamp(v).isoformat()
    if v is pd.NA or v is pd.NaT:
        return None
    return str(v) if not isinstance(v, str) else v


def json_bytes(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON, byte for byte what the API's JSON responses send. Serialised by
    pydantic-core (Rust; 5x ``json.dumps`` on a scoring response); numbers are written as Python writes them
    but for the exponent's form (``1e-7`` for ``1e-07``), and a NaN or infinity (which :func:`json_value` has
    already made ``None``) as ``null``."""
    return pydantic_core.to_json(value, inf_nan_mode="null")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    cols = list(frame.columns)
    return [{c: json_value(v) for c, v in zip(cols, row, strict=True)} for row in frame.itertuples(index=False)]


def run_id(run_dir: str | Path) -> str:
    """A short, stable id of a run: the first 16 hex digits of the SHA-256 of its ``manifest.json``.

    The same run folder always gives the same id; re-running the pipeline (other inputs, config or versions)
    gives another one.
    """
    if not Path(run_dir).is_dir():
        raise NotFoundError(f"run folder '{run_dir}' does not exist; pass the --out folder of `shopseg run`")
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise NotFoundError(
            f"'{run_dir}' is not a shopseg run folder ({MANIFEST} missing); pass the --out folder of `shopseg run`"
        )
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def open_run_db(run_dir: str | Path) -> tuple[Path, dict[str, Any], duckdb.DuckDBPyConnection]:
    """Check ``run_dir`` is a finished run and open its database read-only: (folder, manifest, connection)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise NotFoundError(f"run folder '{path}' does not exist; pass the --out folder of `shopseg run`")
    if not (path / MANIFEST).is_file():
        raise NotFoundError(
            f"'{path}' is not a finished shopseg run ({MANIFEST} missing: the run failed, is still running, or "
            "this is another folder); pass the --out folder of a finished `shopseg run`"
        )
    db = path / DB_NAME
    if not db.is_file():
        raise NotFoundError(f"run folder '{path}' has no {DB_NAME}; re-run `shopseg run` to recreate it")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"'{path / MANIFEST}' is not valid JSON ({exc}); re-run `shopseg run`") from None
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        raise BackendError(
            f"cannot open '{db}' read-only: {exc}. Another process may be writing this run (wait for it to "
            "finish), or the file is damaged (re-run `shopseg run`)."
        ) from None
    return path, manifest, con


def save_upload(name: str, data: bytes, dest: str | Path, *, max_bytes: int) -> Path:
    """Validate an uploaded order file (name, type, size) and write it into ``dest``; returns its path.

    The same readers as ``shopseg run`` decide what is accepted, so an upload fails with the CLI's message.
    """
    from shopseg.ingest.readers import SUPPORTED, file_kind

    base = Path(name).name
    if not base or base in (".", ".."):
        raise InputError(f"upload name {name!r} is not a file name; upload a CSV, Parquet or Excel file")
    kind = file_kind(Path(base))  # raises InputError naming the supported types
    suffixes = {s.lower() for s in Path(base).suffixes}
    if not suffixes & SUPPORTED:
        raise InputError(
            f"'{base}' has no known file type suffix; name it .csv, .csv.gz, .parquet or .xlsx (read as {kind})"
        )
    if len(data) == 0:
        raise DataError(f"the uploaded file '{base}' is empty")
    if len(data) > max_bytes:
        raise InputError(
            f"the uploaded file '{base}' has {len(data):,} bytes, above the limit of {max_bytes:,}; run "
            "`shopseg run` on it from the command line, or raise the limit with --max-upload-mb"
        )
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    path = out / base
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


@dataclass
class ScoreResult:
    """What scoring new order lines gives: one entry per customer, and how the lines were used."""

    as_of: datetime
    customers: list[dict[str, Any]]
    input_rows: int
    clean_rows: int
    quarantined: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "input_rows": self.input_rows,
            "clean_rows": self.clean_rows,
            "quarantined": self.quarantined,
            "notes": self.notes,
            "customers": self.customers,
        }


@dataclass
class _ScoreDB:
    """An in-memory DuckDB database for scoring passes, and what the last pass left in it for the next."""

    backend: DuckDBBackend
    #: the ``returns`` table exists and is empty (a pass without cancellations needs nothing else)
    empty_returns: bool = False
    #: views made in this database (a view binds its tables when queried, so one serves every pass)
    views: set[str] = field(default_factory=set)
    #: statements prepared in this database, by their SQL
    prepared: dict[str, str] = field(default_factory=dict)

    def view(self, name: str, sql: str) -> None:
        """Create the view ``name`` as ``sql`` unless this database has it already."""
        if name not in self.views:
            self.backend.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
            self.views.add(name)

    def fetch(self, sql: str) -> dict[str, np.ndarray]:
        """The columns of a query's result as arrays. A query seen before runs as a statement prepared then:
        DuckDB plans it once and binds it again when the tables it reads are replaced (2 ms of the feature
        query's 10 on a pass of 50 requests). Only queries: DuckDB does not prepare CREATE TABLE … AS."""
        name = self.prepared.get(sql)
        try:
            if name is None and len(self.prepared) < _PREPARED_MAX:
                name = f"_score_{len(self.prepared)}"
                self.backend.con.execute(f"PREPARE {name} AS {sql}")
                self.prepared[sql] = name
            result: dict[str, np.ndarray] = self.backend.con.execute(
                sql if name is None else f"EXECUTE {name}"
            ).fetchnumpy()
        except duckdb.Error as exc:
            raise BackendError(f"DuckDB failed: {exc}\nSQL: {sql[:2000]}") from None
        return result

    def close(self) -> None:
        self.backend.close()


_PREPARED_MAX = 64  # statements kept per scoring database (one feature query per as-of date, the tally)


class _BackendPool:
    """In-memory DuckDB databases for scoring (:class:`_ScoreDB`), reused: creating one costs more than scoring
    a customer. A database whose pass failed is closed, not reused."""

    def __init__(self, size: int) -> None:
        self._free: list[Any] = []
        self._lock = threading.Lock()
        self._size = size

    @contextmanager
    def get(self) -> Iterator[Any]:
        with self._lock:
            backend = self._free.pop() if self._free else None
        if backend is None:
            backend = _ScoreDB(DuckDBBackend(":memory:", threads=1))
        ok = False
        try:
            yield backend
            ok = True
        finally:
            with self._lock:
                keep = ok and len(self._free) < self._size
                if keep:
                    self._free.append(backend)
            if not keep:
                backend.close()

    def close(self) -> None:
        with self._lock:
            while self._free:
                self._free.pop().close()


class RunData:
    """A finished run folder, opened read-only. Thread-safe: share one instance between requests.

    >>> data = RunData.open("out/demo")          # doctest: +SKIP
    >>> data.customer("12347")["segment_name"]   # doctest: +SKIP
    """

    def __init__(self, path: Path, manifest: dict[str, Any], con: duckdb.DuckDBPyConnection) -> None:
        self.path = path
        self.manifest = manifest
        self._con = con
        self._lock = threading.RLock()
        self._loaded: dict[str, Any] = {}
        self._pool = _BackendPool(4)
        self._bodies: dict[tuple[str, int], bytes] = {}
        self._shapes: dict[tuple[tuple[str, ...], bool], tuple[Any, str | None]] = {}
        self.run_id = run_id(path)
        try:
            self.as_of = datetime.fromisoformat(str(manifest["as_of"]))
        except (KeyError, ValueError):
            raise DataError(f"'{path / MANIFEST}' has no valid as_of; re-run `shopseg run`") from None
        self.tables = {str(r[0]) for r in self._sql("SELECT table_name FROM information_schema.tables")}
        for needed in ("segments", "profiles"):
            if needed not in self.tables:
                raise DataError(f"run '{path}' has no '{needed}' table; re-run `shopseg run` to complete it")

    @classmethod
    def open(cls, run_dir: str | Path) -> RunData:
        """Open a run folder (the ``--out`` folder of ``shopseg run``) read-only."""
        path, manifest, con = open_run_db(run_dir)
        try:
            return cls(path, manifest, con)
        except Exception:
            con.close()
            raise

    def close(self) -> None:
        self._pool.close()
        with suppress(duckdb.Error):
            self._con.close()

    def __enter__(self) -> RunData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ plumbing
    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of its own (DuckDB connections are not shared between threads)."""
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def _sql(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.cursor() as cur:
            try:
                return cur.execute(sql, params).fetchall()
            except duckdb.Error as exc:
                raise BackendError(f"DuckDB failed on run '{self.path}': {exc}\nSQL: {sql[:1000]}") from None

    def df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """A query on the run's database as a DataFrame (on a cursor of its own)."""
        with self.cursor() as cur:
            try:
                return cur.execute(sql, params).df()
            except duckdb.Error as exc:
                raise BackendError(f"DuckDB failed on run '{self.path}': {exc}\nSQL: {sql[:1000]}") from None

    def _lazy(self, key: str, make: Any) -> Any:
        if key not in self._loaded:
            with self._lock:
                if key not in self._loaded:
                    self._loaded[key] = make()
        return self._loaded[key]

    def warm(self) -> RunData:
        """Load everything the lookups need now (the API does this at start-up), not on the first request."""
        _ = self.profiles, self.segment_products, self._customers, self._recs, self.segmenter
        self._segment_recs(-1, set(), 1)
        return self

    # ------------------------------------------------------------------------------------------ tables
    @property
    def profiles(self) -> pd.DataFrame:
        """One row per segment (size, shares, means, medians, z-scores, name, action), by segment id."""
        frame: pd.DataFrame = self._lazy("profiles", lambda: self.df("SELECT * FROM profiles ORDER BY segment"))
        return frame

    @property
    def segment_ids(self) -> list[int]:
        return [int(s) for s in self.profiles["segment"]]

    @property
    def has_products(self) -> bool:
        return "segment_items" in self.tables

    @property
    def segment_products(self) -> pd.DataFrame:
        """Per segment, products ranked by buyers: segment, rank, product_id, product_name, buyers, buyer_share,
        lift (empty when the run had no product column)."""

        def make() -> pd.DataFrame:
            cols = ["segment", "rank", "product_id", "product_name", "buyers", "buyer_share", "lift"]
            if not self.has_products:
                return pd.DataFrame(columns=cols)
            # products the run's business filters exclude (recommend step: rec_excluded) are never banner products
            keep = "s.product_id NOT IN (SELECT id FROM rec_excluded)" if "rec_excluded" in self.tables else "true"
            names = self._names_sql("product_id IN (SELECT product_id FROM segment_items WHERE seg_rank <= 100)")
            return self.df(
                f"WITH names AS ({names}), s AS (SELECT * FROM segment_items s WHERE {keep}) "
                "SELECT * FROM (SELECT s.segment, row_number() OVER (PARTITION BY s.segment ORDER BY s.seg_rank) "
                "AS rank, s.product_id, names.product_name, s.buyers, s.buyer_share, s.lift "
                "FROM s LEFT JOIN names USING (product_id)) WHERE rank <= 100 ORDER BY segment, rank"
            )

        frame: pd.DataFrame = self._lazy("segment_products", make)
        return frame

    def _names_sql(self, where: str) -> str:
        """Each product's most frequent name (ties: the smaller name), for products matching ``where``."""
        for table in ("product_names", "items"):
            if table in self.tables and "product_name" in {c for c, _ in self._columns(table)}:
                return f"SELECT product_id, product_name FROM {table} WHERE {where}"
        return (
            "SELECT product_id, arg_min(product_name, (-n, product_name)) AS product_name FROM ("
            "SELECT product_id, product_name, count(*) AS n FROM transactions "
            f"WHERE product_id IS NOT NULL AND {where} GROUP BY ALL) GROUP BY product_id"
        )

    def _columns(self, table: str) -> list[tuple[str, str]]:
        return [(str(r[0]), str(r[1])) for r in self._sql(f'DESCRIBE "{table}"')]

    @property
    def _customers(self) -> tuple[dict[str, int], dict[str, np.ndarray], list[str]]:
        """(customer id -> row, column arrays, feature columns) of the segments table."""

        def make() -> tuple[dict[str, int], dict[str, np.ndarray], list[str]]:
            frame = self.df("SELECT * FROM segments")
            ids = frame["customer_id"].astype(str).to_numpy()
            index = {cid: i for i, cid in enumerate(ids.tolist())}
            arrays = {c: frame[c].to_numpy() for c in frame.columns}
            arrays["customer_id"] = ids
            feats = [c for c in frame.columns if c not in ID_COLUMNS]
            return index, arrays, feats

        value: tuple[dict[str, int], dict[str, np.ndarray], list[str]] = self._lazy("customers", make)
        return value

    @property
    def _recs(self) -> tuple[dict[str, tuple[int, int]], dict[str, np.ndarray]]:
        """(customer id -> (first row, end row), column arrays) of the recommendations table."""

        def make() -> tuple[dict[str, tuple[int, int]], dict[str, np.ndarray]]:
            if "recommendations" not in self.tables:
                return {}, {}
            frame = self.df("SELECT * FROM recommendations ORDER BY customer_id, rank")
            ids = frame["customer_id"].astype(str).to_numpy()
            bounds: dict[str, tuple[int, int]] = {}
            if len(ids):
                starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
                ends = np.r_[starts[1:], len(ids)]
                bounds = {str(ids[s]): (int(s), int(e)) for s, e in zip(starts, ends, strict=True)}
            return bounds, {c: frame[c].to_numpy() for c in frame.columns if c != "customer_id"}

        value: tuple[dict[str, tuple[int, int]], dict[str, np.ndarray]] = self._lazy("recs", make)
        return value

    @property
    def segmenter(self) -> _Segmenter:
        """The run's saved segmenter (from ``model/``), for scoring new customers."""
        seg: _Segmenter = self._lazy("segmenter", lambda: _load_segmenter(self.path / "model"))
        return seg

    @property
    def model_meta(self) -> dict[str, Any]:
        """``model/segmenter.json`` as saved (k selection table, preprocessing, segment names)."""

        def make() -> dict[str, Any]:
            p = self.path / "model" / "segmenter.json"
            if not p.is_file():
                return {}
            meta: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
            return meta

        meta: dict[str, Any] = self._lazy("model_meta", make)
        return meta

    # ------------------------------------------------------------------------------------------ overview
    def overview(self) -> dict[str, Any]:
        """Headline figures: customers, revenue, segments, rows in/clean/quarantined, dates, warnings, notes."""
        rows = self.manifest.get("rows", {})
        _, arrays, _ = self._customers
        revenue = float(np.nansum(arrays["monetary"].astype("float64"))) if "monetary" in arrays else None
        first = arrays.get("first_purchase")
        last = arrays.get("last_purchase")
        seg = self.manifest.get("segmentation", {})
        return {
            "run_id": self.run_id,
            "run_dir": str(self.path),
            "as_of": self.as_of.isoformat(),
            "customers": len(arrays["customer_id"]),
            "revenue": revenue,
            "segments": len(self.profiles),
            "algorithm": seg.get("algorithm"),
            "k_reason": seg.get("reason"),
            "input_rows": rows.get("input_rows"),
            "clean_rows": rows.get("clean_rows"),
            "quarantined_rows": rows.get("quarantined_rows"),
            "recommendations": rows.get("recommendations"),
            "first_purchase": json_value(pd.Series(first).min()) if first is not None and len(first) else None,
            "last_purchase": json_value(pd.Series(last).max()) if last is not None and len(last) else None,
            "inputs": [i.get("path") for i in self.manifest.get("inputs", [])],
            "warnings": list(self.manifest.get("warnings", [])),
            "notes": list(self.manifest.get("notes", [])),
        }

    def reconciliation(self) -> pd.DataFrame:
        """Rows per cleaning rule (code, description, rows, share); the last row is the clean rows."""
        if "reconciliation" not in self.tables:
            return pd.DataFrame(columns=["code", "description", "rows", "share"])
        return self.df("SELECT code, description, rows, share FROM reconciliation")

    def quarantine_sample(self, reason: str | None = None, limit: int = 100) -> pd.DataFrame:
        """The first ``limit`` quarantined rows (optionally of one reason), in input order. Read from the run's
        quarantine.parquet when it is there: the database's ``quarantine`` view joins the raw rows, which for
        Parquet inputs are read in place and so need the input files where they were at run time."""
        where = "WHERE reason = ?" if reason else ""
        params = [reason] if reason else []
        exported = self.path / "quarantine.parquet"
        if exported.is_file():
            src = "read_parquet('" + str(exported).replace("'", "''") + "')"
        elif "quarantine" in self.tables:
            src = "quarantine"
        else:
            return pd.DataFrame()
        return self.df(f"SELECT * FROM {src} {where} ORDER BY _row_id NULLS LAST LIMIT {int(limit)}", params or None)

    def k_selection(self) -> dict[str, Any]:
        """The k-selection table (k, inertia and the indices) with the chosen k, the knee and the reason."""
        sel = self.model_meta.get("selection") or {}
        table = pd.DataFrame(sel.get("table") or [])
        return {
            "table": table,
            "chosen": sel.get("chosen", self.manifest.get("segmentation", {}).get("k")),
            "knee": sel.get("knee"),
            "reason": sel.get("reason", self.manifest.get("segmentation", {}).get("reason", "")),
            "warning": sel.get("warning"),
        }

    # ------------------------------------------------------------------------------------------ segments
    def _profile_row(self, segment: int) -> pd.Series:
        prof = self.profiles
        hit = prof[prof["segment"] == segment]
        if hit.empty:
            raise NotFoundError(f"segment {segment} is not in this run; its segments are {self.segment_ids}")
        row: pd.Series = hit.iloc[0]
        return row

    def segments(self) -> list[dict[str, Any]]:
        """One summary per segment: id, name, action, size, customer and revenue shares."""
        return [self._segment_summary(r) for _, r in self.profiles.iterrows()]

    @staticmethod
    def _segment_summary(r: pd.Series) -> dict[str, Any]:
        return {
            "segment": int(r["segment"]),
            "name": str(r["name"]),
            "action": str(r["action"]),
            "size": int(r["size"]),
            "share_customers": json_value(r.get("share_customers")),
            "share_revenue": json_value(r.get("share_revenue")),
        }

    def top_products(self, segment: int, n: int = 10) -> list[dict[str, Any]]:
        p = self.segment_products
        return _records(p[p["segment"] == segment].head(n).drop(columns=["segment"]))

    def banner_products(self, segment: int, n: int = 5) -> list[dict[str, Any]]:
        """Products to promote on the segment's banners: the most over-represented (highest lift) among those
        bought by at least 5% of the segment's buyers (and 3 buyers), so a single purchase cannot lead."""
        p = self.segment_products
        p = p[p["segment"] == segment]
        if p.empty:
            return []
        seg_buyers = float((p["buyers"] / p["buyer_share"]).max())
        floor = max(3.0, 0.05 * seg_buyers)
        pick = p[p["buyers"] >= floor].sort_values(["lift", "buyers", "product_id"], ascending=[False, False, True])
        return _records(pick.head(n).drop(columns=["segment"]))

    def rules(self, segment: int) -> Any:
        """Readable rules of a segment when the run has them, else None: its entry of ``segment_rules.json``
        (rule text, precision, recall, fidelity and each rule's conditions), else its rows of the
        ``segment_rules`` table."""
        path = self.path / "segment_rules.json"
        if path.is_file():
            data = self._lazy("rules_json", lambda: json.loads(path.read_text(encoding="utf-8")))
            if isinstance(data, dict):
                data = data.get("segments", data)
            if isinstance(data, dict):
                return data.get(str(segment))
            if isinstance(data, list):
                hits = [r for r in data if isinstance(r, dict) and str(r.get("segment")) == str(segment)]
                return hits[0] if len(hits) == 1 else (hits or None)
            return None
        if "segment_rules" in self.tables:
            frame = self.df("SELECT * FROM segment_rules WHERE segment = ?", [segment])
            return _records(frame.drop(columns=["segment"])) or None
        return None

    def banner_plan(self, segment: int) -> list[dict[str, Any]] | None:
        """The run's banner decision for the segment (``banners`` table: promote internally or sell each slot,
        with the economics), when the run has one."""
        if "banners" not in self.tables:
            return None
        frame = self.df("SELECT * FROM banners WHERE segment = ?", [segment])
        return _records(frame.drop(columns=[c for c in ("segment", "segment_name") if c in frame.columns]))

    def stability(self) -> dict[str, Any] | None:
        """Bootstrap stability saved with the model (per k and per segment), when the run computed it."""
        stab = self.model_meta.get("stability")
        return stab if isinstance(stab, dict) and stab else None

    def insights(self) -> dict[str, Any] | None:
        """The run's shop insights (``insights.json``: hours, weekdays, buyers …), when it has them."""
        path = self.path / "insights.json"
        if not path.is_file():
            return None
        data: dict[str, Any] = self._lazy("insights", lambda: json.loads(path.read_text(encoding="utf-8")))
        return data

    def segment(self, segment: int, n_products: int = 10) -> dict[str, Any]:
        """Everything about one segment: summary, profile per feature (mean, median, z), rules, top and banner
        products."""
        r = self._profile_row(segment)
        feats = [c[5:] for c in r.index if str(c).startswith("mean_")]
        profile = {
            f: {
                "mean": json_value(r.get(f"mean_{f}")),
                "median": json_value(r.get(f"median_{f}")),
                "z": json_value(r.get(f"z_{f}")),
            }
            for f in feats
        }
        return {
            **self._segment_summary(r),
            "earned_by": json_value(r.get("earned_by")),
            "name_rule": json_value(r.get("name_rule")),
            "profile": profile,
            "rules": self.rules(segment),
            "top_products": self.top_products(segment, n_products),
            "banner_products": self.banner_products(segment),
            "banner_plan": self.banner_plan(segment),
        }

    # ------------------------------------------------------------------------------------------ customers
    @property
    def n_customers(self) -> int:
        return len(self._customers[0])

    def customer_ids(self, limit: int | None = None) -> list[str]:
        index, _, _ = self._customers
        if limit is None:
            return list(index)
        return [cid for cid, _ in zip(index, range(limit), strict=False)]

    def customer(self, customer_id: str, n: int = 10) -> dict[str, Any]:
        """A customer of the run: segment, name, action, feature values and the top-``n`` recommendations."""
        index, arrays, feats = self._customers
        i = index.get(str(customer_id))
        if i is None:
            raise NotFoundError(
                f"customer '{customer_id}' is not in this run ({len(index):,} customers); to segment a new "
                "customer, POST their orders to /score (or use `shopseg score`)"
            )
        seg = int(arrays["segment"][i])
        features, attributes = _split({c: arrays[c][i] for c in feats}, {c: arrays[c].dtype.kind for c in feats})
        return {
            "customer_id": str(customer_id),
            "segment": seg,
            "segment_name": str(arrays["segment_name"][i]),
            "action": str(arrays["action"][i]),
            "features": features,
            "attributes": attributes,
            "recommendations": self.recommendations(customer_id, n),
        }

    def customer_json(self, customer_id: str, n: int = 10) -> bytes:
        """:meth:`customer` as the API's JSON body (UTF-8 bytes), made once per customer and ``n`` and then kept
        (up to :data:`LOOKUP_CACHE` bodies), so a repeated lookup costs a dictionary access."""
        key = (str(customer_id), n)
        body = self._bodies.get(key)
        if body is None:
            body = json_bytes(self.customer(customer_id, n))
            if len(self._bodies) < LOOKUP_CACHE:
                self._bodies[key] = body
        return body

    def precompute_lookups(self, n: int = 10, limit: int = LOOKUP_PRECOMPUTE) -> int:
        """Make the JSON body of every customer's lookup with ``n`` recommendations now (the API does this at
        start-up for runs of up to ``limit`` customers); returns how many were made."""
        if self.n_customers > limit:
            return 0
        for cid in self._customers[0]:
            self.customer_json(cid, n)
        return self.n_customers

    def recommendations(self, customer_id: str, n: int = 10) -> list[dict[str, Any]]:
        bounds, arrays = self._recs
        b = bounds.get(str(customer_id))
        if b is None:
            return []
        start, end = b[0], min(b[1], b[0] + n)
        return [{c: json_value(a[j]) for c, a in arrays.items()} for j in range(start, end)]

    def history(self, customer_id: str, limit: int = 1000) -> pd.DataFrame:
        """The customer's clean order lines from the run database, oldest first."""
        return self.df(
            "SELECT order_id, ts, product_id, product_name, quantity, unit_price, quantity * unit_price AS amount, "
            f"country FROM transactions WHERE customer_id = ? ORDER BY ts, order_id, product_id LIMIT {int(limit)}",
            [str(customer_id)],
        )

    # ------------------------------------------------------------------------------------------ items
    def similar_items(
        self, product_id: str, n: int = 10, *, by: Literal["count", "lift"] = "count", min_count: int = 1
    ) -> dict[str, Any]:
        """Customers who bought ``product_id`` also bought: co-buyer counts, confidence and lift, from the run's
        interactions (one row per customer and product), in SQL.

        confidence = co-buyers / buyers of the product; lift = confidence / (buyers of the other product /
        all customers with a product).
        """
        if not self.has_products:
            raise NotFoundError("this run has no product column, so there are no items to compare")
        if n < 1 or min_count < 1:
            raise ConfigError(f"n and min_count must be at least 1 (got n={n}, min_count={min_count})")
        if by not in ("count", "lift"):
            raise ConfigError(f"by must be 'count' or 'lift' (got {by!r})")
        src = (
            "interactions_all"
            if "interactions_all" in self.tables
            else "(SELECT DISTINCT customer_id, product_id FROM transactions WHERE product_id IS NOT NULL)"
        )
        order = "co_buyers DESC, lift DESC" if by == "count" else "lift DESC, co_buyers DESC"
        rows = self.df(
            f"WITH i AS (SELECT DISTINCT customer_id, product_id FROM {src}), "
            "x AS (SELECT customer_id FROM i WHERE product_id = ?), "
            "tot AS (SELECT count(DISTINCT customer_id)::DOUBLE AS n FROM i), "
            "co AS (SELECT i.product_id, count(*) AS co_buyers FROM i JOIN x USING (customer_id) "
            "       WHERE i.product_id <> ? GROUP BY 1 HAVING count(*) >= ?), "
            "pop AS (SELECT product_id, count(*) AS buyers FROM i WHERE product_id IN (SELECT product_id FROM co) "
            "        GROUP BY 1) "
            "SELECT co.product_id, co.co_buyers, pop.buyers, "
            "co.co_buyers::DOUBLE / (SELECT count(*) FROM x) AS confidence, "
            "(co.co_buyers::DOUBLE / (SELECT count(*) FROM x)) / (pop.buyers / tot.n) AS lift "
            f"FROM co JOIN pop USING (product_id), tot ORDER BY {order}, co.product_id LIMIT {int(n)}",
            [str(product_id), str(product_id), int(min_count)],
        )
        buyers = int(
            self._sql(f"SELECT count(DISTINCT customer_id) FROM {src} WHERE product_id = ?", [product_id])[0][0]
        )
        if buyers == 0:
            raise NotFoundError(f"product '{product_id}' was not bought by any customer of this run")
        names = self._product_names([product_id, *rows["product_id"].astype(str).tolist()])
        rows.insert(1, "product_name", [names.get(str(p)) for p in rows["product_id"]])
        return {
            "product_id": str(product_id),
            "product_name": names.get(str(product_id)),
            "buyers": buyers,
            "by": by,
            "similar": _records(rows),
        }

    def _product_names(self, ids: list[str]) -> dict[str, str | None]:
        def make() -> dict[str, str | None]:
            frame = self.df(self._names_sql("true"))
            return {
                str(p): (None if n is None else str(n))
                for p, n in zip(frame["product_id"], frame["product_name"], strict=True)
            }

        names: dict[str, str | None] = self._lazy("names", make)
        return {i: names.get(i) for i in ids}

    # ------------------------------------------------------------------------------------------ scoring
    def score_orders(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        customer_id: str | None = None,
        as_of: datetime | None = None,
        n: int = 10,
    ) -> ScoreResult:
        """Segment customers the run has not seen, from their raw order lines (dicts in the run's source column
        names, the canonical names, or any names the automatic mapping knows).

        The lines go through the library's column mapping, typing, cleaning rules and feature SQL on a private
        in-memory database; the run's saved segmenter assigns the segment; recommendations are the segment's top
        products the customer has not bought. ``customer_id`` fills in (and overrides) the customer of every line.
        ``as_of`` defaults to the run's as-of date, or the day after the customer's last order when that is later.
        One call is :meth:`score_many` with one job.
        """
        result = self.score_many([ScoreJob(rows, customer_id=customer_id, as_of=as_of, n=n)])[0]
        if isinstance(result, ShopsegError):
            raise result
        return result

    def score_many(self, jobs: Sequence[ScoreJob]) -> list[ScoreResult | ShopsegError]:
        """Score several independent requests in one pass: their lines share one set of SQL statements (customer
        ids are kept apart per job), and each job gets exactly what :meth:`score_orders` gives it alone, or the
        error it alone would raise (returned in its place, not raised)."""
        out: list[ScoreResult | ShopsegError | None] = [None] * len(jobs)
        prepared: list[_Prepared] = []
        for i, job in enumerate(jobs):
            try:
                p = self._prepare(i, job)
            except ShopsegError as exc:
                out[i] = exc
                continue
            if p is None:  # a shape the shared pass does not cover: the step-by-step path
                try:
                    out[i] = self._score_alone(job)
                except ShopsegError as exc:
                    out[i] = exc
            else:
                prepared.append(p)
        if prepared:
            try:
                with self._pool.get() as db:
                    results = _score_pass(self, db, prepared)
            except ShopsegError as exc:
                if len(prepared) == 1:
                    results = {prepared[0].index: exc}
                else:  # cannot tell whose lines broke the pass: score each alone, so only they fail
                    results = {}
                    for p in prepared:
                        try:
                            with self._pool.get() as db:
                                results.update(_score_pass(self, db, [p]))
                        except ShopsegError as one:
                            results[p.index] = one
            for index, res in results.items():
                out[index] = res
        done: list[ScoreResult | ShopsegError] = []
        for one_result in out:
            assert one_result is not None
            done.append(one_result)
        return done

    def _prepare(self, index: int, job: ScoreJob) -> _Prepared | None:
        """Check one job and shape its lines as text columns; None when only the step-by-step path fits it."""
        from shopseg.config import InputConfig
        from shopseg.ingest.mapping import _SAMPLE, map_columns

        rows = job.rows
        names = _checked_names(job)
        forced = job.customer_id is not None
        names = [c for c in names if c != "__customer"]  # the name the customer_id option gets
        columns = {c: _texts([r.get(c) for r in rows]) for c in names}
        if forced:
            columns["__customer"] = [str(job.customer_id)] * len(rows)
        if (
            not columns
            or len(rows) > _SAMPLE
            or all(c.startswith("column") and c[6:].isdigit() for c in columns)
            or {"rowid", "_source"} & set(columns)
        ):
            # format detection on a sample, headerless names, or names the shared pass uses itself: the library's
            # own ingest decides
            return None
        shape = (tuple(columns), forced)
        known = self._shapes.get(shape)
        if known is None:
            cfg_in, _ = self._score_configs(list(columns), forced)
            with_fmt = InputConfig.model_validate(cfg_in)
            cfg_in.pop("date_format", None)
            mapping = map_columns(list(columns), dict(InputConfig.model_validate(cfg_in).columns))
            known = (mapping, with_fmt.date_format)
            if len(self._shapes) < 1000:
                self._shapes[shape] = known
        mapping, fmt = known
        if fmt and not _all_parse(columns[self.manifest["ingest"]["columns"]["ts"]], fmt):
            fmt = None  # not in the run's own date style: detect it from the values
        return _Prepared(index, job, columns, mapping, fmt)

    def _score_alone(self, job: ScoreJob) -> ScoreResult:
        """One job through the library's ingest, clean and feature steps as a pipeline run takes them (for
        inputs the shared pass does not cover; tests compare the two)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from shopseg.clean import clean_transactions
        from shopseg.config import CleanConfig, InputConfig
        from shopseg.features import build_features
        from shopseg.ingest import ingest_transactions

        rows, customer_id, as_of, n = job.rows, job.customer_id, job.as_of, job.n
        names = _checked_names(job)
        if customer_id is not None:
            names = [c for c in names if c != "__customer"] + ["__customer"]
        columns = {c: pa.array([_text(r.get(c)) for r in rows], type=pa.string()) for c in names if c != "__customer"}
        if customer_id is not None:
            columns["__customer"] = pa.array([str(customer_id)] * len(rows), type=pa.string())
        table = pa.table(columns)
        cfg_in, cfg_clean = self._score_configs(list(columns), customer_id is not None)
        fmt = cfg_in.get("date_format")
        if fmt and not _all_parse(table.column(self.manifest["ingest"]["columns"]["ts"]).to_pylist(), fmt):
            del cfg_in["date_format"]  # not in the run's own date style: detect it from the values
        with tempfile.TemporaryDirectory(prefix="shopseg-score-") as tmp:
            backend = DuckDBBackend(":memory:", threads=1)
            try:
                src = Path(tmp) / "orders.parquet"
                pq.write_table(table, src)
                ing = ingest_transactions(backend, [src], InputConfig.model_validate(cfg_in), work=Path(tmp) / "w")
                cleaned = clean_transactions(backend, ing, CleanConfig.model_validate(cfg_clean))
                quarantined = {
                    str(r.code): int(r.rows)
                    for r in cleaned.reconciliation.itertuples()
                    if r.code != "clean" and r.rows
                }
                if cleaned.clean_rows == 0:
                    raise _unusable(cleaned.input_rows, quarantined)
                last = backend.scalar("SELECT max(ts) FROM transactions")
                when = as_of or _default_as_of(self.as_of, last)
                fs = build_features(backend, when, present_columns=set(ing.mapping.source), table=None)
                bought = backend.df(
                    "SELECT DISTINCT customer_id, product_id FROM transactions WHERE product_id IS NOT NULL"
                )
            finally:
                backend.close()
        had = bought.groupby("customer_id")["product_id"].agg(lambda s: set(s.astype(str))).to_dict()
        frame = fs.frame
        labels = np.asarray(self.segmenter.predict(frame), dtype=np.int64)
        ids = frame["customer_id"].astype(str).tolist()
        out = self._scored_customers(frame, range(len(ids)), labels, ids, [had.get(c, set()) for c in ids], n)
        notes = [x for x in ing.notes if "no product column" in x or "order id" in x]
        return ScoreResult(when, out, cleaned.input_rows, cleaned.clean_rows, quarantined, notes)

    def _scored_customers(
        self,
        frame: pd.DataFrame | _JsonColumns,
        rows: Sequence[int],
        labels: np.ndarray,
        ids: list[str],
        bought: list[set[str]],
        n: int,
    ) -> list[dict[str, Any]]:
        """The response entries of scored customers: feature rows ``rows`` of ``frame`` (or of its
        :func:`_json_columns`, taken once for many jobs), with their segment labels."""
        names = self._lazy(
            "segment_names",
            lambda: {int(r["segment"]): (str(r["name"]), str(r["action"])) for _, r in self.profiles.iterrows()},
        )
        known = self._customers[0]
        features, attributes = _json_columns(frame) if isinstance(frame, pd.DataFrame) else frame
        out = []
        for i, (row, cid) in enumerate(zip(rows, ids, strict=True)):
            seg = int(labels[i])
            name, action = names.get(seg, (f"Segment {seg}", ""))
            out.append(
                {
                    "customer_id": cid,
                    "known": cid in known,
                    "segment": seg,
                    "segment_name": name,
                    "action": action,
                    "features": {c: v[row] for c, v in features.items()},
                    "attributes": {c: v[row] for c, v in attributes.items()},
                    "recommendations": self._segment_recs(seg, bought[i], n),
                }
            )
        return out

    def _score_configs(self, columns: list[str], forced_customer: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        """Input and cleaning settings for scoring: the run's own, limited to what applies to these lines."""
        cfg = self.manifest.get("config", {})
        run_cols: dict[str, str] = dict(self.manifest.get("ingest", {}).get("columns", {}))
        explicit = {k: v for k, v in (cfg.get("input", {}).get("columns") or {}).items() if v in columns}
        if forced_customer:
            explicit["customer_id"] = "__customer"
        cfg_in: dict[str, Any] = {"columns": explicit}
        fmt = self.manifest.get("ingest", {}).get("date_format")
        if fmt and fmt != "epoch" and run_cols.get("ts") in columns:
            cfg_in["date_format"] = fmt  # the run's own layout: read its dates the same way
        cfg_clean = dict(cfg.get("clean", {}))
        cfg_clean["outliers"] = "off"  # an outlier is judged against a population; one customer has none
        return cfg_in, cfg_clean

    def _segment_recs(self, segment: int, bought: set[str], n: int) -> list[dict[str, Any]]:
        def make() -> dict[int, list[tuple[str, Any, Any]]]:
            out: dict[int, list[tuple[str, Any, Any]]] = {}
            for r in self.segment_products.itertuples():
                out.setdefault(int(r.segment), []).append(
                    (str(r.product_id), json_value(r.product_name), json_value(r.buyer_share))
                )
            return out

        lists: dict[int, list[tuple[str, Any, Any]]] = self._lazy("segment_lists", make)
        picked = [t for t in lists.get(segment, []) if t[0] not in bought][:n]
        return [
            {"rank": i, "product_id": pid, "product_name": name, "score": share, "source": "segment_top"}
            for i, (pid, name, share) in enumerate(picked, start=1)
        ]


@dataclass
class ScoreJob:
    """One scoring request: a customer's (or several customers') raw order lines and the options of
    :meth:`RunData.score_orders`."""

    rows: Sequence[Mapping[str, Any]]
    customer_id: str | None = None
    as_of: datetime | None = None
    n: int = 10


@dataclass
class _Prepared:
    """A checked job: its lines as text columns and its column mapping."""

    index: int
    job: ScoreJob
    columns: dict[str, list[str | None]]
    mapping: Any  # shopseg.ingest.mapping.ColumnMapping
    date_format: str | None  # the run's own date layout when every date fits it, else None: detect
    #: the job's prefix of its customers' ids inside a pass (fixed width: ids sort as they would alone)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = f"{self.index:06d}"

    @property
    def n_rows(self) -> int:
        return len(self.job.rows)


_SEP = "\x1f"  # between a job's key and a customer id inside a pass


def _checked_names(job: ScoreJob) -> list[str]:
    """The column names of a job's lines in first-seen order, after the checks every scoring path makes."""
    if not job.rows:
        raise DataError("no order lines to score; send at least one line with a customer, date and price")
    if job.n < 1:
        raise ConfigError(f"n must be at least 1 (got {job.n})")
    first = job.rows[0].keys()
    if all(r.keys() == first for r in job.rows):  # the usual case: every line has the same columns
        names = [str(k) for k in first]
    else:
        names = []
        for r in job.rows:
            for k in r:
                if k not in names:
                    names.append(str(k))
    if not names:
        raise DataError("the order lines have no columns; send objects such as {customer_id, ts, unit_price}")
    return names


def _default_as_of(run_as_of: datetime, last: Any) -> datetime:
    """The run's as-of, or the day after the last order when that is later."""
    day_after = datetime(last.year, last.month, last.day) + timedelta(days=1)
    return max(run_as_of, day_after)


def _unusable(input_rows: int, quarantined: dict[str, int]) -> DataError:
    return DataError(
        f"none of the {input_rows} order lines can be used: "
        + ", ".join(f"{k}: {v}" for k, v in quarantined.items())
        + "; send purchases with a customer, a date, a positive quantity and price"
    )


def _score_pass(data: RunData, db: _ScoreDB, prepared: list[_Prepared]) -> dict[int, ScoreResult | ShopsegError]:
    """Score every prepared job in one set of SQL statements on ``db`` (an in-memory DuckDB).

    The statements are the library's own (typing, cleaning rules, duplicate and returns passes, feature SQL); a
    job's customer ids carry the job's key, so jobs never mix. Per job, the checks of ingest (date layout,
    decimal comma, an empty customer column) are one grouped query per column layout. Jobs the shared statements
    cannot answer exactly as alone (an empty customer column: the library's own message) go the step-by-step way.
    The lines are read in place (an Arrow table registered as the raw table), and the duplicate and returns
    passes run only when a line needs them (their statements are a fifth of a small pass's cost).
    """
    import dataclasses

    import pyarrow as pa

    from shopseg.clean import CANONICAL, DUPLICATE_PASS, FLAGGED, RETURN_LINES, _mark_duplicates, _returns, rules_for
    from shopseg.config import CleanConfig
    from shopseg.features import FEATURES, feature_sql
    from shopseg.ingest import RAW, typed_sql
    from shopseg.ingest.mapping import DATE_FORMATS

    backend = db.backend
    results: dict[int, ScoreResult | ShopsegError] = {}
    cfg_clean = CleanConfig.model_validate(data._score_configs([], False)[1])
    all_rules = rules_for(cfg_clean)
    shapes: dict[tuple[Any, ...], list[_Prepared]] = {}
    for p in prepared:
        shapes.setdefault((tuple(p.columns), tuple(p.mapping.source.items())), []).append(p)
    alive: list[tuple[_Prepared, Any, list[Any]]] = []  # (job, mapping with its formats, its rules)
    first = True
    for s, group in enumerate(shapes.values()):
        names = list(group[0].columns)
        mapping = group[0].mapping
        n_lines = sum(p.n_rows for p in group)
        table = pa.table(
            {
                **{c: pa.array([v for p in group for v in p.columns[c]], type=pa.string()) for c in names},
                "_source": pa.array([p.key for p in group for _ in range(p.n_rows)], type=pa.string()),
                "rowid": pa.array(range(n_lines), type=pa.int64()),  # what the typed SQL numbers lines by
            }
        )
        backend.register(RAW, table)  # read in place: the lines as the run's raw table, without a copy
        # ingest's checks, per job: customer ids present, date layout, decimal comma (every line is in the sample
        # the library takes, so counting all of a job's lines is what it counts)
        cust = quote(mapping.source["customer_id"])
        ts = quote(mapping.source["ts"])
        v = f"CASE WHEN {ts} IS NOT NULL THEN trim(CAST({ts} AS VARCHAR)) END"
        nums = [quote(mapping.source[c]) for c in ("quantity", "unit_price", "amount") if mapping.has(c)]
        commas = " + ".join(
            f"(CASE WHEN regexp_full_match(trim(CAST({c} AS VARCHAR)), '-?\\d+,\\d{{1,3}}') "
            f"AND NOT regexp_full_match(trim(CAST({c} AS VARCHAR)), '-?\\d{{1,3}},\\d{{3}}') THEN 1 ELSE 0 END)"
            for c in nums
        )
        dots = " + ".join(
            f"(CASE WHEN regexp_full_match(trim(CAST({c} AS VARCHAR)), '-?\\d*\\.\\d+') THEN 1 ELSE 0 END)"
            for c in nums
        )
        # first the cheap answers: dates in the first layout the library tries, numbers without a comma; in
        # Python when every job's answer is certain there, else one grouped query
        known = [_quick_counts(p, mapping.source["customer_id"], mapping.source["ts"]) for p in group]
        quick: dict[str, Sequence[Any]] = {p.key: q for p, q in zip(group, known, strict=True) if q is not None}
        if len(quick) < len(group):
            quick = {
                str(r[0]): r[1:]
                for r in backend.rows(
                    f"SELECT _source, count(NULLIF(trim(CAST({cust} AS VARCHAR)), '')), count(v), "
                    f"count(try_strptime(v, '{DATE_FORMATS[0]}')) FROM (SELECT _source, {cust}, {v} AS v "
                    f"FROM {RAW}) GROUP BY _source"
                )
            }
        num_src = [mapping.source[c] for c in ("quantity", "unit_price", "amount") if mapping.has(c)]
        full = [
            p.key
            for p in group
            if (p.date_format is None and quick[p.key][2] < quick[p.key][1])
            or any("," in "".join(filter(None, p.columns[c])) for c in num_src)
        ]
        by_key: dict[str, tuple[Any, ...]] = {}
        if full:
            fmts = ", ".join(f"count(try_strptime(v, '{f}'))" for f in DATE_FORMATS)
            keys = ", ".join(f"'{k}'" for k in full)
            by_key = {
                str(r[0]): r[1:]
                for r in backend.rows(
                    f"SELECT _source, 0, {f'sum({commas}), sum({dots})' if nums else '0, 0'}, count(v), avg(CASE "
                    "WHEN v IS NULL THEN NULL WHEN regexp_full_match(v, '\\d{10}(\\d{3}|\\d{6})?') THEN 1 "
                    f"ELSE 0 END), {fmts} FROM (SELECT *, {v} AS v FROM {RAW} WHERE _source IN ({keys})) "
                    "GROUP BY _source"
                )
            }
        subgroups: dict[tuple[str | None, bool], list[_Prepared]] = {}
        for p in group:
            present, total, first_fmt = quick[p.key]
            if int(present) == 0:
                try:
                    results[p.index] = data._score_alone(p.job)
                except ShopsegError as exc:
                    results[p.index] = exc
                continue
            fmt = p.date_format
            n_comma = n_dot = 0
            if p.key in by_key:
                _, n_comma, n_dot, total, epoch, *scores = by_key[p.key]
            if fmt is None and (total == 0 or first_fmt == total):
                fmt = DATE_FORMATS[0]  # every date parses with the first layout: no other can count more
            elif fmt is None:
                best = max(int(x) for x in scores)
                if best == 0:
                    fmt = "epoch" if epoch is not None and float(epoch) > 0.95 else DATE_FORMATS[0]
                else:
                    fmt = next(f for f, x in zip(DATE_FORMATS, scores, strict=True) if int(x) == best)
            comma = int(n_comma or 0) > 0 and int(n_dot or 0) == 0
            subgroups.setdefault((fmt, comma), []).append(p)
        present_cols = set(mapping.source)
        rules = [r for r in all_rules if all(c in present_cols for c in r.requires)]
        case = " ".join(f"WHEN {r.condition} THEN '{r.code}'" for r in rules if r.condition != DUPLICATE_PASS)
        selects = []
        for (fmt, comma), members in subgroups.items():
            m = dataclasses.replace(mapping, date_format=fmt, decimal_comma=comma)
            typed = typed_sql(m, {c: "VARCHAR" for c in names})
            keys = ", ".join(f"'{p.key}'" for p in members)
            selects.append(
                f"SELECT _row_id + {s << 32} AS _row_id, _source AS _job, _source || chr(31) || customer_id AS "
                "customer_id, order_id, product_id, product_name, category, quantity, unit_price, ts, country, "
                f"CASE {case} ELSE NULL END AS _reason FROM ({typed}) WHERE _source IN ({keys})"
            )
            alive += [(p, m, rules) for p in members]
        if selects:
            head = f"CREATE OR REPLACE TABLE {FLAGGED} AS " if first else f"INSERT INTO {FLAGGED} "
            backend.execute(head + " UNION ALL ".join(selects))
            first = False
    backend.con.unregister(RAW)
    if not alive:
        return results
    db.view("transactions", f"SELECT {CANONICAL} FROM {FLAGGED} WHERE _reason IS NULL")
    # one look at the flagged lines: lines by job and reason, whether the duplicate and returns passes have
    # anything to do (exact copies: clean lines sharing a hash of the canonical columns, the duplicate pass's
    # own candidates; cancellations the returns pass matches), and the products each customer bought (the
    # duplicate pass keeps one copy of each line, so the pairs are the same before it and after)
    tally = f"SELECT _job, _reason, count(*) AS n, max(ts) AS latest FROM {FLAGGED} GROUP BY ALL"
    counts: dict[str, dict[str | None, int]] = {}  # lines by job and reason
    last: dict[str, Any] = {}  # each job's last clean purchase
    bought: dict[str, set[str]] = {}
    copies = cancellations = 0

    def count(job: Any, reason: str | None, n: Any, latest: Any) -> None:
        counts.setdefault(str(job), {})[reason] = int(n)
        if reason is None:
            last[str(job)] = latest

    looked = db.fetch(
        f"SELECT 0 AS kind, _job, _reason, n, latest, NULL AS cid, NULL AS pid FROM ({tally}) UNION ALL "
        f"SELECT 1, NULL, NULL, count(*) FILTER (WHERE _reason IS NULL) - count(DISTINCT hash({CANONICAL})) "
        f"FILTER (WHERE _reason IS NULL), NULL, NULL, CAST(count(*) FILTER (WHERE {RETURN_LINES}) AS VARCHAR) "
        f"FROM {FLAGGED} UNION ALL "
        f"SELECT DISTINCT 2, NULL, NULL, NULL, NULL, customer_id, product_id FROM {FLAGGED} "
        "WHERE _reason IS NULL AND product_id IS NOT NULL"
    )
    for kind, job, reason, n, latest, cid, pid in zip(*(_objects(a) for a in looked.values()), strict=True):
        if kind == 0:
            count(job, reason, n, latest)
        elif kind == 1:
            copies, cancellations = int(n), int(pid)
        else:
            bought.setdefault(str(cid), set()).add(str(pid))
    if copies:  # the copies become 'duplicate' lines: count again
        _mark_duplicates(backend)
        counts.clear()
        for row in backend.rows(tally):
            count(*row)
    if cancellations or not db.empty_returns:
        _returns(backend)  # with no cancellations: the empty table, kept for the next passes
        db.empty_returns = not cancellations
    scored: list[tuple[_Prepared, Any, dict[str, int], datetime]] = []
    for p, m, rules in alive:
        mine = counts.get(p.key, {})
        quarantined = {r.code: mine[r.code] for r in rules if mine.get(r.code)}
        if not mine.get(None):
            results[p.index] = _unusable(p.n_rows, quarantined)
            continue
        when = p.job.as_of or _default_as_of(data.as_of, last[p.key])
        scored.append((p, m, quarantined, when))
    numeric = {f.name for f in FEATURES if f.numeric}
    whens = list(dict.fromkeys(w for *_, w in scored))
    queries: list[tuple[str, list[tuple[_Prepared, Any, dict[str, int], datetime]]]] = []  # with their jobs
    if len(whens) == 1:
        sql = data._lazy(f"feature_sql {whens[0].isoformat()}", lambda: feature_sql(whens[0]))
        queries.append((sql, scored))
    elif whens:
        # jobs as of different dates (customers ordering after the run's as-of: the day after their last order):
        # one feature query with each job's date, not one query per date (20 ms each)
        backend.register(
            "_score_jobs",
            pa.table(
                {
                    "job": pa.array([p.key for p, *_ in scored], type=pa.string()),
                    "as_of": pa.array([w for *_, w in scored], type=pa.timestamp("us")),
                }
            ),
        )
        db.view(
            "_score_as_of",
            f"SELECT DISTINCT f.customer_id, j.as_of FROM {FLAGGED} f JOIN _score_jobs j ON j.job = f._job",
        )
        queries.append(
            (data._lazy("feature_sql by job", lambda: feature_sql(None, as_of_table="_score_as_of")), scored)
        )
    for sql, batch in queries:
        fetched = db.fetch(sql)
        frame = pd.DataFrame(
            {
                c: _float_array(v) if c in numeric else (v.astype(str) if c == "customer_id" else v)
                for c, v in fetched.items()
            }
        )
        full_ids: list[str] = frame["customer_id"].tolist()
        owner = np.array([c[:6] for c in full_ids], dtype=object)
        cols = _json_columns(frame)
        # jobs that lack a column skip the features needing it, as alone; predict per set of columns
        by_cols: dict[tuple[str, ...], list[tuple[_Prepared, Any, dict[str, int], datetime, np.ndarray]]] = {}
        columns: list[str] = list(frame.columns)
        kepts: dict[int, tuple[str, ...]] = {}  # by mapping (jobs of one column layout share theirs)
        for p, m, quarantined, when in batch:
            at = np.flatnonzero(owner == p.key)
            if len(at) == 0:
                results[p.index] = DataError(
                    f"no customer has a clean purchase before {when:%Y-%m-%d}; choose a later --as-of"
                )
                continue
            kept = kepts.get(id(m.source))
            if kept is None:
                skip = {f.name for f in FEATURES if not set(f.requires) <= set(m.source)}
                kept = kepts[id(m.source)] = tuple(c for c in columns if c not in skip)
            by_cols.setdefault(kept, []).append((p, m, quarantined, when, at))
        for kept, same_cols in by_cols.items():
            rows = np.concatenate([at for *_, at in same_cols])
            # the whole frame (the usual case: every job has every column) or the rows of these jobs
            whole = len(kept) == frame.shape[1] and len(rows) == len(frame)
            sub = frame if whole else frame.iloc[rows][list(kept)].reset_index(drop=True)
            try:
                labels = np.asarray(data.segmenter.predict(sub), dtype=np.int64)
            except ShopsegError as exc:
                for p, *_ in same_cols:
                    results[p.index] = exc
                continue
            sub_cols = cols if whole else _json_columns(sub)
            start = 0
            for p, m, quarantined, when, at in same_cols:
                # rows of ``sub`` (and of its labels) that are this job's customers
                where: np.ndarray = at if whole else np.arange(start, start + len(at))
                ids = [full_ids[r][len(p.key) + 1 :] for r in at]
                customers = data._scored_customers(
                    sub_cols, where.tolist(), labels[where], ids, [bought.get(full_ids[r], set()) for r in at], p.job.n
                )
                start += len(at)
                notes = []
                if not m.has("product_id"):
                    notes.append("no product column: product features and recommendations are skipped")
                if not m.has("order_id"):
                    notes.append("no order id column: each customer's lines at one timestamp form one order")
                clean = counts[p.key][None]
                results[p.index] = ScoreResult(when, customers, p.n_rows, clean, quarantined, notes)
    return results


_ISO_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def _quick_counts(p: _Prepared, customer: str, ts: str) -> tuple[int, int, int] | None:
    """What the pass's first check query counts for a job (lines with a customer; dates; dates in the first
    layout the library tries, ``%Y-%m-%d %H:%M:%S``), when Python can be sure of it; None when only DuckDB's
    own parsing can tell. A date counts as in the layout when, trimmed of spaces as SQL's ``trim`` does, it has
    exactly that shape and is a real calendar time (``datetime.fromisoformat``): then DuckDB's ``strptime``
    reads it too. A job whose date layout is already known needs only the customer count."""
    customers = p.columns[customer]
    present = sum(1 for c in customers if c is not None and c.strip(" "))
    if p.date_format is not None:
        return present, 0, 0
    dates = p.columns[ts]
    total = len(dates) - dates.count(None)
    for value in set(dates):  # the lines of an order share their time
        if value is None:
            continue
        v = value.strip(" ")
        if _ISO_SECONDS.fullmatch(v) is None:
            return None
        try:
            datetime.fromisoformat(v)
        except ValueError:
            return None
    return present, total, total


def _objects(values: np.ndarray) -> list[Any]:
    """A fetched column as Python values, missing ones (a masked array's) as None."""
    if isinstance(values, np.ma.MaskedArray):
        return [
            None if m else v for v, m in zip(values.data.tolist(), np.ma.getmaskarray(values).tolist(), strict=True)
        ]
    out: list[Any] = values.tolist()
    return out


def _float_array(values: np.ndarray) -> np.ndarray:
    """A fetched numeric column as float64, missing values (a masked array's) as NaN."""
    out: np.ndarray = np.ma.filled(np.ma.asarray(values).astype(np.float64), np.nan)
    return out


_JsonColumns = tuple[dict[str, list[Any]], dict[str, list[Any]]]


def _json_columns(frame: pd.DataFrame) -> _JsonColumns:
    """A feature frame's columns as JSON-ready lists, split as responses show them: numeric features (floats;
    missing or infinite = None) and other attributes (times as ISO 8601 text, flags, text); ``customer_id``
    left out. Done once per column, not per customer."""
    features: dict[str, list[Any]] = {}
    attributes: dict[str, list[Any]] = {}
    for c in frame.columns:
        if c == "customer_id":
            continue
        col = frame[c]
        if col.dtype.kind in "fiu":
            a = col.to_numpy(dtype=np.float64, na_value=np.nan)
            features[c] = [None if v != v else v for v in np.where(np.isfinite(a), a, np.nan).tolist()]
        else:
            attributes[c] = [json_value(v) for v in col.tolist()]
    return features, attributes


def _split(values: dict[str, Any], kinds: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Numeric feature values (floats; missing = None) apart from other attributes (times, flags, text)."""
    features: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for c, raw in values.items():
        v = json_value(raw)
        if kinds[c] in "fiu" and not isinstance(v, bool):
            features[c] = None if v is None else float(v)
        else:
            attributes[c] = v
    return features, attributes


def _all_parse(values: list[Any], fmt: str) -> bool:
    for v in values:
        if v is None or not str(v).strip():
            continue
        try:
            datetime.strptime(str(v).strip(), fmt)
        except ValueError:
            return False
    return True


_TEXT_OR_NONE = frozenset({str, type(None)})
_INT = frozenset({int})
_FLOAT = frozenset({float})


def _texts(values: list[Any]) -> list[str | None]:
    """:func:`_text` of every value, with the JSON types (text, missing, int, float) handled inline."""
    kinds = set(map(type, values))
    if kinds <= _TEXT_OR_NONE:  # most columns: ids, dates, names
        return values
    if kinds == _INT:  # quantities
        return list(map(str, values))
    if kinds == _FLOAT:  # prices, amounts
        return [str(int(v)) if v.is_integer() else str(v) for v in values]
    out: list[str | None] = []
    for v in values:
        t = type(v)
        if v is None or t is str:
            out.append(v)
        elif t is int:
            out.append(str(v))
        elif t is float:
            out.append(str(int(v)) if v.is_integer() else str(v))
        else:
            out.append(_text(v))
    return out


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _load_segmenter(model_dir: Path) -> _Segmenter:
    """The saved segmenter: ``shopseg.segment.base.load_segmenter`` when the package has it (every algorithm),
    else the K-Means loader."""
    import importlib

    if not (model_dir / "segmenter.json").is_file():
        raise NotFoundError(f"the run has no saved model ({model_dir / 'segmenter.json'} missing); re-run it")
    try:
        base = importlib.import_module("shopseg.segment.base")
        loader = getattr(base, "load_segmenter", None)
    except ImportError:
        loader = None
    if loader is None:
        from shopseg.segment import KMeansSegmenter

        return KMeansSegmenter.load(model_dir)[0]
    loaded = loader(model_dir)
    seg: _Segmenter = loaded[0] if isinstance(loaded, tuple) else loaded
    return seg
