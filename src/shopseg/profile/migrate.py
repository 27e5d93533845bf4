"""How customers moved between segments from one period to the next, scored with one saved model.

:func:`migrate` scores an OLD and a NEW period with the same saved model (ingest → clean → features → predict,
:func:`shopseg.pipeline.score_customers`) and :func:`migration_table` compares the two assignments:

* every customer of OLD gets a row ``from`` their OLD segment; customers only in NEW come from ``new``;
* every customer of NEW goes ``to`` their NEW segment; customers only in OLD go to ``lost``.

The result holds the per-customer moves, the counts matrix (rows: from, columns: to; every model segment is
listed even when empty), the row shares (each row sums to 1: where the customers of one OLD segment went) and
the same flows as a long table. :func:`write_migration` writes them as CSV/Parquet and a self-contained
``migration.html`` with a Sankey diagram.

Each period is scored as of its own end (midnight after its last clean purchase) unless an as-of time is given.
OLD and NEW may be separate windows (customers who did not buy in NEW are then *lost*) or cumulative snapshots
(NEW = everything up to a later date: nobody is lost, lapsing customers move to the lapsed segments).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from shopseg.config import RunConfig
from shopseg.errors import DataError

__all__ = ["LOST", "NEW", "Migration", "migrate", "migration_table", "write_migration"]

#: Row label of customers who appear only in NEW, column label of those only in OLD.
NEW = "new (only in NEW)"
LOST = "lost (only in OLD)"


@dataclass
class Migration:
    """The moves between two periods.

    Attributes:
        customers: one row per customer of either period: ``customer_id``, ``old_segment``, ``old_name``,
            ``new_segment``, ``new_name`` (segments are nullable integers: missing = not in that period) and
            ``status`` (``stayed``, ``moved``, ``lost``, ``new``).
        counts: customers per (from, to); index = from labels (``"0: Name"`` … and :data:`NEW`), columns = to
            labels (``"0: Name"`` … and :data:`LOST`).
        shares: ``counts`` divided by its row totals (rows of empty segments are 0).
        flows: the same as a long table: ``from_segment``, ``from_name``, ``to_segment``, ``to_name``,
            ``customers``, ``share_of_from``, ``share_of_all`` (every cell but new → lost).
        segments: segment number → name, from the model.
        old_as_of, new_as_of: the as-of times the periods were scored at (None when built from frames).
    """

    customers: pd.DataFrame
    counts: pd.DataFrame
    shares: pd.DataFrame
    flows: pd.DataFrame
    segments: dict[int, str]
    old_as_of: datetime | None = None
    new_as_of: datetime | None = None

    def summary(self) -> dict[str, int]:
        st = self.customers["status"].value_counts()
        return {
            "old_customers": int(self.customers["old_segment"].notna().sum()),
            "new_customers_total": int(self.customers["new_segment"].notna().sum()),
            "stayed": int(st.get("stayed", 0)),
            "moved": int(st.get("moved", 0)),
            "lost": int(st.get("lost", 0)),
            "new": int(st.get("new", 0)),
        }


def _label(seg: int, segments: Mapping[int, str]) -> str:
    return f"{seg}: {segments.get(seg, f'Segment {seg}')}"


def migration_table(old: pd.DataFrame, new: pd.DataFrame, segments: Mapping[int, str] | None = None) -> Migration:
    """Compare two assignments (frames with ``customer_id`` and ``segment``; one row per customer).

    ``segments`` maps segment numbers to names (every model segment, so empty ones are listed too); segments
    that occur in the frames but not in ``segments`` are added as ``Segment N``.
    """
    for which, f in (("OLD", old), ("NEW", new)):
        missing = {"customer_id", "segment"} - set(f.columns)
        if missing:
            raise DataError(f"the {which} assignment lacks column(s) {sorted(missing)}; expected customer_id, segment")
        dup = f["customer_id"][f["customer_id"].duplicated()]
        if not dup.empty:
            raise DataError(f"the {which} assignment lists customer {dup.iloc[0]!r} twice; one row per customer")
    names = dict(segments or {})
    for v in pd.concat([old["segment"], new["segment"]]).dropna().unique():
        names.setdefault(int(v), f"Segment {int(v)}")
    segs = sorted(names)
    o = old[["customer_id", "segment"]].astype({"customer_id": str}).rename(columns={"segment": "old_segment"})
    n = new[["customer_id", "segment"]].astype({"customer_id": str}).rename(columns={"segment": "new_segment"})
    cust = o.merge(n, on="customer_id", how="outer").sort_values("customer_id", kind="stable").reset_index(drop=True)
    cust["old_segment"] = cust["old_segment"].astype("Int64")
    cust["new_segment"] = cust["new_segment"].astype("Int64")
    cust.insert(2, "old_name", cust["old_segment"].map(lambda s: names[int(s)] if pd.notna(s) else pd.NA))
    cust["new_name"] = cust["new_segment"].map(lambda s: names[int(s)] if pd.notna(s) else pd.NA)
    status = pd.Series("moved", index=cust.index)
    status[cust["old_segment"].isna()] = "new"
    status[cust["new_segment"].isna()] = "lost"
    both = cust["old_segment"].notna() & cust["new_segment"].notna()
    status[both & (cust["old_segment"] == cust["new_segment"])] = "stayed"
    cust["status"] = status

    rows = [_label(s, names) for s in segs] + [NEW]
    cols = [_label(s, names) for s in segs] + [LOST]
    frm = cust["old_segment"].map(lambda s: _label(int(s), names) if pd.notna(s) else NEW)
    to = cust["new_segment"].map(lambda s: _label(int(s), names) if pd.notna(s) else LOST)
    counts = pd.crosstab(frm, to).reindex(index=rows, columns=cols, fill_value=0).astype("int64")
    counts.index.name, counts.columns.name = "from", "to"
    totals = counts.sum(axis=1)
    shares = counts.div(totals.where(totals > 0, 1), axis=0)
    total = int(counts.to_numpy().sum())
    flow_rows = []
    keys: list[int | None] = [*segs, None]
    for i, fs in enumerate(keys):
        for j, ts in enumerate(keys):
            if fs is None and ts is None:
                continue
            c = int(counts.iat[i, j])
            flow_rows.append(
                {
                    "from_segment": fs,
                    "from_name": names[fs] if fs is not None else NEW,
                    "to_segment": ts,
                    "to_name": names[ts] if ts is not None else LOST,
                    "customers": c,
                    "share_of_from": float(shares.iat[i, j]),
                    "share_of_all": c / total if total else 0.0,
                }
            )
    flows = pd.DataFrame(flow_rows)
    flows["from_segment"] = flows["from_segment"].astype("Int64")
    flows["to_segment"] = flows["to_segment"].astype("Int64")
    return Migration(cust, counts, shares, flows, names)


def migrate(
    model_dir: str | Path,
    old_inputs: Sequence[str | Path],
    new_inputs: Sequence[str | Path],
    out: str | Path,
    config: RunConfig | None = None,
    *,
    old_as_of: datetime | None = None,
    new_as_of: datetime | None = None,
) -> Migration:
    """Score OLD and NEW with the saved model and write the migration files into ``out`` (see
    :func:`write_migration`); the periods' databases are kept as ``out/old.duckdb`` and ``out/new.duckdb``.

    The model refuses periods whose features do not match it (a :class:`~shopseg.errors.NotFittedError` that
    names the missing features).
    """
    from shopseg.pipeline import score_customers

    config = config or RunConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scored = {}
    for which, inputs, when in (("old", old_inputs, old_as_of), ("new", new_inputs, new_as_of)):
        db = out / f"{which}.duckdb"
        for p in (db, db.with_name(db.name + ".wal")):
            p.unlink(missing_ok=True)
        cfg = config.model_copy(update={"features": config.features.model_copy(update={"as_of": when})})
        scored[which] = score_customers(model_dir, inputs, db, cfg)
    old, new = scored["old"], scored["new"]
    m = migration_table(old.frame, new.frame, old.segments)
    m.old_as_of, m.new_as_of = old.as_of, new.as_of
    write_migration(m, out, title=f"{_describe(old_inputs)} → {_describe(new_inputs)}")
    return m


def _describe(inputs: Sequence[str | Path]) -> str:
    names = ", ".join(Path(str(i)).name for i in inputs)
    return names[:80]


def write_migration(m: Migration, out: str | Path, *, title: str = "") -> dict[str, str]:
    """Write ``migration.csv``/``.parquet`` (long flows), ``migration_matrix.csv`` (counts),
    ``migration_shares.csv`` (row shares), ``migration_customers.parquet`` and ``migration.html``."""
    from shopseg.export import write_frame
    from shopseg.report import build_migration_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_frame(m.flows, out / "migration.csv")
    write_frame(m.flows, out / "migration.parquet")
    write_frame(m.counts.reset_index(), out / "migration_matrix.csv")
    write_frame(m.shares.reset_index(), out / "migration_shares.csv")
    write_frame(m.customers, out / "migration_customers.parquet")
    build_migration_report(m, out / "migration.html", title=title)
    return {
        "flows": "migration.csv",
        "flows_parquet": "migration.parquet",
        "matrix": "migration_matrix.csv",
        "shares": "migration_shares.csv",
        "customers": "migration_customers.parquet",
        "report": "migration.html",
    }
