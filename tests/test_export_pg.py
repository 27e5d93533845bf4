"""Exports: PostgreSQL (a real server: round trip, replace without duplicates, one transaction, run ids),
files (CSV, Parquet, JSON), the two CRM layouts, pseudonymised ids and the minimum segment size."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pytest

from service_support import postgres_dsn, shared_run
from shopseg.cli import main
from shopseg.errors import BackendError, ConfigError
from shopseg.export.crm import export_files, export_run, pseudonym
from shopseg.export.postgres import mask_dsn
from shopseg.serve.rundir import run_id

SALT = "pepper-and-salt-42"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def other_run(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second run: the same tables under another manifest (so another run id)."""
    out = tmp_path_factory.mktemp("other") / "run"
    shutil.copytree(run_dir, out)
    m = json.loads((out / "manifest.json").read_text())
    m["notes"] = [*m.get("notes", []), "a second run"]
    (out / "manifest.json").write_text(json.dumps(m))
    return out


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with postgres_dsn() as d:
        yield d


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection to a clean database (the export's tables dropped before each test)."""
    with psycopg.connect(dsn, autocommit=True) as con:
        for t in ("segments", "profiles", "recommendations", "banners", "runs"):
            con.execute(f"DROP TABLE IF EXISTS public.shopseg_{t}")
        con.execute("DROP SCHEMA IF EXISTS crm CASCADE")
        yield con


def _pg(con: psycopg.Connection[tuple[object, ...]], sql: str) -> pd.DataFrame:
    cur = con.execute(sql)
    cols = [d.name for d in cur.description or []]
    return pd.DataFrame(cur.fetchall(), columns=cols)


def _run_table(run_dir: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(run_dir / "shopseg.duckdb"), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


# ------------------------------------------------------------------------------------------------ PostgreSQL


def test_round_trip_of_the_run_tables(run_dir: Path, dsn: str, db: psycopg.Connection[tuple[object, ...]]) -> None:
    rep = export_run(run_dir, dsn)
    rid = run_id(run_dir)
    assert rep.run_id == rid
    seg = _pg(db, "SELECT * FROM shopseg_segments ORDER BY customer_id")
    want = _run_table(run_dir, "SELECT * FROM segments ORDER BY customer_id")
    assert rep.rows["shopseg_segments"] == len(want) == len(seg)
    assert set(seg["run_id"]) == {rid}
    assert seg["customer_id"].tolist() == want["customer_id"].tolist()
    assert seg["segment"].tolist() == want["segment"].tolist()
    assert seg["segment_name"].tolist() == want["segment_name"].tolist()
    pd.testing.assert_series_equal(seg["monetary"], want["monetary"], check_exact=False, rtol=1e-12)
    assert (pd.to_datetime(seg["last_purchase"]) == want["last_purchase"]).all()
    prof = _pg(db, "SELECT * FROM shopseg_profiles ORDER BY segment")
    want_prof = _run_table(run_dir, "SELECT * FROM profiles ORDER BY segment")
    assert prof.drop(columns="run_id").columns.tolist() == want_prof.columns.tolist()
    assert prof["size"].tolist() == want_prof["size"].tolist()
    assert prof["name"].tolist() == want_prof["name"].tolist()
    recs = _pg(db, "SELECT customer_id, rank, product_id, product_name FROM shopseg_recommendations")
    want_recs = pd.read_parquet(run_dir / "recommendations.parquet")
    got = recs.sort_values(["customer_id", "rank"]).reset_index(drop=True)
    exp = want_recs[["customer_id", "rank", "product_id", "product_name"]].sort_values(["customer_id", "rank"])
    pd.testing.assert_frame_equal(got, exp.reset_index(drop=True), check_dtype=False)
    # the banner plan: one row per segment and slot, the decision and its economics as the run wrote them
    banners = _pg(db, "SELECT * FROM shopseg_banners ORDER BY segment, slot")
    want_ban = _run_table(run_dir, "SELECT * FROM banners ORDER BY segment, slot")
    assert len(want_ban) > 0 and rep.rows["shopseg_banners"] == len(banners) == len(want_ban)
    assert banners[["segment", "slot", "recommendation"]].values.tolist() == (
        want_ban[["segment", "slot", "recommendation"]].values.tolist()
    )
    pd.testing.assert_series_equal(banners["ratio"], want_ban["ratio"], check_exact=False, rtol=1e-12)
    runs = _pg(db, "SELECT * FROM shopseg_runs")
    assert runs["run_id"].tolist() == [rid]
    assert runs["customers"].tolist() == [len(want)] and runs["pseudonymised"].tolist() == [False]
    # the declared column types, not text everywhere
    types = dict(
        db.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'shopseg_segments'"
        ).fetchall()
    )
    assert types["segment"] == "bigint" and types["monetary"] == "double precision"
    assert types["last_purchase"] == "timestamp without time zone" and types["run_id"] == "text"


def test_re_export_replaces_and_never_duplicates(
    run_dir: Path, other_run: Path, dsn: str, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    def counts() -> dict[str, int]:
        return {
            t: int(db.execute(f"SELECT count(*) FROM shopseg_{t}").fetchall()[0][0])
            for t in ("segments", "profiles", "recommendations", "runs")
        }

    export_run(run_dir, dsn)
    once = counts()
    export_run(run_dir, dsn)
    assert counts() == once
    # replace mode: another run takes the tables over
    export_run(other_run, dsn)
    assert counts() == once
    assert {r[0] for r in db.execute("SELECT DISTINCT run_id FROM shopseg_segments").fetchall()} == {run_id(other_run)}
    # run mode: runs side by side, each replaced on re-export
    export_run(run_dir, dsn, mode="run")
    export_run(run_dir, dsn, mode="run")
    twice = counts()
    assert twice == {k: 2 * v for k, v in once.items()}
    by_run = dict(db.execute("SELECT run_id, count(*) FROM shopseg_segments GROUP BY run_id").fetchall())
    assert by_run == {run_id(run_dir): once["segments"], run_id(other_run): once["segments"]}


def test_a_failed_export_changes_nothing(
    run_dir: Path, other_run: Path, dsn: str, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    export_run(run_dir, dsn)
    before = db.execute("SELECT run_id, count(*) FROM shopseg_segments GROUP BY 1").fetchall()
    # the profiles table (written after segments) gets a column of another type: the export must fail ...
    db.execute("ALTER TABLE shopseg_profiles ALTER COLUMN size TYPE text")
    with pytest.raises(ConfigError, match=r"shopseg_profiles\.size is text"):
        export_run(other_run, dsn)
    # ... and roll back the segments it had already replaced
    assert db.execute("SELECT run_id, count(*) FROM shopseg_segments GROUP BY 1").fetchall() == before


def test_schema_prefix_and_new_columns(run_dir: Path, dsn: str, db: psycopg.Connection[tuple[object, ...]]) -> None:
    db.execute("CREATE SCHEMA crm")
    db.execute("CREATE TABLE crm.seg_segments (run_id text NOT NULL, customer_id text)")  # an older, narrower table
    rep = export_run(run_dir, dsn, schema="crm", table_prefix="seg_")
    assert set(rep.rows) == {"seg_segments", "seg_profiles", "seg_recommendations", "seg_banners"}
    cols = {
        r[0]
        for r in db.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'crm' AND table_name = 'seg_segments'"
        ).fetchall()
    }
    assert {"segment", "monetary", "recency_days"} <= cols
    with pytest.raises(ConfigError, match="schema name"):
        export_run(run_dir, dsn, schema="crm; DROP TABLE x")


def test_pseudonymised_and_small_segments_left_out(
    run_dir: Path, dsn: str, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    prof = _run_table(run_dir, "SELECT segment, size FROM profiles ORDER BY size")
    cut = int(prof["size"].iloc[0]) + 1  # the smallest segment falls below
    small = int(prof["segment"].iloc[0])
    rep = export_run(run_dir, dsn, pseudonymise=True, salt=SALT, min_segment_size=cut)
    assert [s["segment"] for s in rep.suppressed_segments] == [small]
    assert small not in rep.exported_segments and rep.pseudonymised
    crm = _run_table(run_dir, "SELECT customer_id, segment FROM segments")
    kept = crm[crm["segment"] != small]
    seg = _pg(db, "SELECT customer_id, segment FROM shopseg_segments")
    assert sorted(seg["customer_id"]) == sorted(
        hashlib.sha256((SALT + c).encode()).hexdigest() for c in kept["customer_id"]
    )
    assert small not in set(seg["segment"]) and small not in set(
        _pg(db, "SELECT segment FROM shopseg_profiles")["segment"]
    )
    assert small not in set(_pg(db, "SELECT segment FROM shopseg_banners")["segment"])
    recs = _pg(db, "SELECT DISTINCT customer_id FROM shopseg_recommendations")
    assert set(recs["customer_id"]) <= set(seg["customer_id"])
    assert not set(recs["customer_id"]) & set(crm["customer_id"])
    runs = _pg(db, "SELECT * FROM shopseg_runs")
    assert json.loads(runs["suppressed_segments"].iloc[0])[0]["segment"] == small
    everything = " ".join(
        str(v)
        for t in ("segments", "profiles", "recommendations", "banners", "runs")
        for v in _pg(db, f"SELECT * FROM shopseg_{t}").to_numpy().ravel()
    )
    assert SALT not in everything


def test_connection_errors_hide_the_password(run_dir: Path) -> None:
    from service_support import free_port

    bad = f"postgresql://someone:TopSecret9@127.0.0.1:{free_port()}/nodb"
    with pytest.raises(BackendError) as exc:
        export_run(run_dir, bad)
    assert "TopSecret9" not in str(exc.value) and "***" in str(exc.value)
    assert mask_dsn("host=h password=abc user=u") == "host=h password=*** user=u"


def test_cli_export_to_postgres(
    run_dir: Path, dsn: str, db: psycopg.Connection[tuple[object, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", str(run_dir), "--to", dsn, "--min-segment-size", "1"]) == 0
    out = capsys.readouterr().out
    assert "shopseg_segments" in out and run_id(run_dir) in out
    n = db.execute("SELECT count(*) FROM shopseg_segments").fetchall()[0][0]
    assert n == len(pd.read_parquet(run_dir / "segments.parquet"))


# ------------------------------------------------------------------------------------------------ files


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_file_exports_hold_the_run_tables(run_dir: Path, tmp_path: Path, fmt: str) -> None:
    rep = export_files(run_dir, tmp_path, format=fmt)  # type: ignore[arg-type]
    readers = {
        "csv": lambda p: pd.read_csv(p, dtype={"customer_id": str, "product_id": str}),
        "parquet": pd.read_parquet,
        "json": lambda p: pd.DataFrame(json.loads(p.read_text())),
    }
    seg = readers[fmt](tmp_path / f"segments.{fmt}")
    want = pd.read_parquet(run_dir / "segments.parquet")
    assert rep.rows[f"segments.{fmt}"] == len(seg) == len(want)
    assert seg["customer_id"].astype(str).tolist() == want["customer_id"].tolist()
    assert seg["segment"].tolist() == want["segment"].tolist()
    recs = readers[fmt](tmp_path / f"recommendations.{fmt}")
    assert len(recs) == len(pd.read_parquet(run_dir / "recommendations.parquet"))
    prof = readers[fmt](tmp_path / f"profiles.{fmt}")
    assert prof["size"].sum() == len(want)
    banners = readers[fmt](tmp_path / f"banners.{fmt}")
    assert sorted(set(banners["segment"])) == sorted(set(want["segment"]))
    assert rep.rows[f"banners.{fmt}"] == len(banners) == len(pd.read_csv(run_dir / "banners.csv"))
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report["run_id"] == run_id(run_dir) and report["rows"] == rep.rows
    assert not list(tmp_path.glob("*.tmp"))


def test_crm_tags_layout(run_dir: Path, tmp_path: Path) -> None:
    export_files(run_dir, tmp_path, format="crm-tags")
    f = pd.read_csv(tmp_path / "crm_tags.csv", dtype=str, keep_default_na=False)
    assert f.columns.tolist() == ["Email Address", "External ID", "Tags"]
    crm = pd.read_parquet(run_dir / "segments.parquet").set_index("customer_id")
    row = f.iloc[0]
    seg, name = crm.loc[row["External ID"], ["segment", "segment_name"]]
    slug = "-".join("".join(ch if ch.isalnum() else " " for ch in name.lower()).split())
    assert row["Tags"] == f"shopseg-segment-{seg},{slug}"
    assert len(f) == len(crm) and (f["Email Address"] == "").all()


def test_crm_properties_layout(run_dir: Path, tmp_path: Path) -> None:
    export_files(run_dir, tmp_path, format="crm-properties")
    f = pd.read_csv(tmp_path / "crm_properties.csv", dtype={"external_id": str}, keep_default_na=False)
    assert f.columns.tolist() == [
        "email",
        "external_id",
        "shopseg_segment",
        "shopseg_segment_name",
        "shopseg_action",
        "shopseg_recency_days",
        "shopseg_frequency",
        "shopseg_monetary",
        "shopseg_recommended_products",
        "shopseg_run_id",
    ]
    recs = pd.read_parquet(run_dir / "recommendations.parquet")
    crm = pd.read_parquet(run_dir / "segments.parquet").set_index("customer_id")
    for _, r in f.iloc[[0, 50, 200]].iterrows():
        top = recs[recs["customer_id"] == r["external_id"]].sort_values("rank")["product_id"].head(5)
        assert r["shopseg_recommended_products"] == ";".join(top)
        assert r["shopseg_monetary"] == pytest.approx(round(crm.loc[r["external_id"], "monetary"], 2))
    assert set(f["shopseg_run_id"]) == {run_id(run_dir)}


def test_crm_layouts_take_emails_from_a_customers_table(run_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    con = duckdb.connect(str(run / "shopseg.duckdb"))
    con.execute("CREATE TABLE customers AS SELECT customer_id, customer_id || '@example.com' AS Email FROM segments")
    con.close()
    export_files(run, tmp_path / "a", format="crm-tags")
    f = pd.read_csv(tmp_path / "a" / "crm_tags.csv", dtype=str)
    assert (f["Email Address"] == f["External ID"] + "@example.com").all()
    rep = export_files(run, tmp_path / "b", format="crm-properties", pseudonymise=True, salt=SALT)
    g = pd.read_csv(tmp_path / "b" / "crm_properties.csv", dtype=str, keep_default_na=False)
    assert (g["email"] == "").all() and any("e-mail" in n for n in rep.notes)


def test_pseudonymised_files_never_hold_the_salt_or_the_ids(run_dir: Path, tmp_path: Path) -> None:
    crm = pd.read_parquet(run_dir / "segments.parquet")
    for fmt in ("csv", "json", "crm-tags", "crm-properties"):
        out = tmp_path / fmt
        export_files(run_dir, out, format=fmt, pseudonymise=True, salt=SALT)  # type: ignore[arg-type]
        blob = b"".join(p.read_bytes() for p in out.iterdir())
        assert SALT.encode() not in blob
        for cid in crm["customer_id"].iloc[:20]:
            assert pseudonym(cid, SALT).encode() in blob
            assert f",{cid},".encode() not in blob and f'"{cid}"'.encode() not in blob
    seg = pd.read_csv(tmp_path / "csv" / "segments.csv")
    assert seg["customer_id"].is_monotonic_increasing  # ordered by pseudonym, not by the original ids


def test_export_option_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="salt"):
        export_files(run_dir, tmp_path, pseudonymise=True)
    with pytest.raises(ConfigError, match="too short"):
        export_files(run_dir, tmp_path, pseudonymise=True, salt="abc")
    with pytest.raises(ConfigError, match="min-segment-size"):
        export_files(run_dir, tmp_path, min_segment_size=0)
    with pytest.raises(ConfigError, match="the run folder itself"):
        export_files(run_dir, run_dir / ".." / run_dir.name)
    assert main(["export", str(run_dir), "--to", str(tmp_path), "--format", "xml"]) == 2
    assert "crm-tags" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "--to", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_export_files_reports_suppressed_segments(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sizes = pd.read_parquet(run_dir / "segments.parquet").groupby("segment").size()
    code = main(
        [
            "export",
            str(run_dir),
            "--to",
            str(tmp_path),
            "--format",
            "parquet",
            "--min-segment-size",
            str(sizes.max() + 1),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"{len(sizes)} segment(s) below the minimum size" in out
    assert len(pd.read_parquet(tmp_path / "segments.parquet")) == 0
