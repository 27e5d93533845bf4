"""The command line: end to end on the bundled sample, scoring, and clear errors with exit code 2."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from shopseg.cli import main
from shopseg.datasets import sample_path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out + cap.err


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "run"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    return out


def test_demo_end_to_end(demo_dir: Path) -> None:
    crm = pd.read_csv(demo_dir / "segments.csv", dtype={"customer_id": str})
    # 600 customers were sampled; 3 of them have no clean purchase (only cancellations / postage)
    assert len(crm) == 597
    assert not crm["customer_id"].str.endswith(".0").any()
    html = (demo_dir / "report.html").read_text(encoding="utf-8")
    assert "<script src=" not in html and "<link " not in html  # self-contained: nothing fetched
    for section in (
        "Choosing the number of segments",
        "Cleaning and reconciliation",
        "Segment cards",
        "Recommendations",
    ):
        assert section in html
    assert html.count('class="plotly-graph-div"') >= 6


def test_sample_reconciles_to_its_lines(demo_dir: Path) -> None:
    with gzip.open(sample_path(), "rt", encoding="cp1252") as fh:
        data_lines = sum(1 for _ in fh) - 1
    q = pd.read_parquet(demo_dir / "quarantine.parquet")
    crm_rows = pd.read_parquet(demo_dir / "segments.parquet")
    import json

    m = json.loads((demo_dir / "manifest.json").read_text())
    assert m["rows"]["input_rows"] == data_lines == 67913
    assert m["rows"]["clean_rows"] + len(q) == data_lines
    assert m["ingest"]["files"][0]["encoding"] in ("cp1252", "latin-1")
    assert m["ingest"]["date_format"] == "%m/%d/%Y %H:%M"
    assert len(crm_rows) == m["rows"]["customers"]


def test_run_with_k_and_score(tmp_path: Path, demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(["run", str(sample_path()), "--out", str(tmp_path / "r"), "--k", "4", "-q"], capsys)
    assert code == 0, text
    assert "Report:" in text
    assert pd.read_csv(tmp_path / "r" / "segments.csv")["segment"].nunique() == 4
    code, text = _run(["score", str(demo_dir), str(sample_path()), "--out", str(tmp_path / "s")], capsys)
    assert code == 0, text
    scored = pd.read_csv(tmp_path / "s" / "segments.csv", dtype={"customer_id": str})
    assert len(scored) == 597


@pytest.mark.parametrize(
    ("content", "args", "expected"),
    [
        ("Invoice,Stock,Qty,Date,Price\n1,A,1,2011-01-01,2.0\n", [], "customer_id"),
        ("", [], "empty"),
        ("CustomerID,InvoiceDate,UnitPrice\n,2011-01-01,1.0\n,2011-01-02,2.0\n", [], "no customer ids"),
        (
            "CustomerID,InvoiceDate,UnitPrice\n1,2011-01-01,1.0\n",
            ["--customer-col", "CustmerID"],
            "did you mean 'CustomerID'",
        ),
        ("CustomerID,InvoiceDate,UnitPrice\n1,2011-01-01,1.0\n", ["--encoding", "no-such-codec"], "encoding"),
        ("CustomerID,InvoiceDate,UnitPrice\n1,2011-01-01,1.0\n", ["--k", "0"], "segment.k"),
    ],
)
def test_bad_input_is_one_paragraph_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, args: list[str], expected: str
) -> None:
    src = tmp_path / "in.csv"
    src.write_text(content, encoding="utf-8")
    code, text = _run(["run", str(src), "--out", str(tmp_path / "o"), "-q", *args], capsys)
    assert code == 2
    assert expected in text
    assert "Traceback" not in text


def test_missing_file_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(["run", str(tmp_path / "nope.csv"), "-q"], capsys)
    assert code == 2 and "does not exist" in text
    code, text = _run(["run"], capsys)
    assert code == 2
    code, text = _run(["run", "--help"], capsys)
    assert code == 0 and "--customer-col" in text


def test_no_traceback_in_a_real_process(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(b"")
    env = {**os.environ, "COLUMNS": "200"}
    p = subprocess.run(
        [sys.executable, "-m", "shopseg.cli", "run", str(src), "-q", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and "error:" in p.stderr


def test_banner_and_impact_options_change_only_what_they_name(tmp_path: Path) -> None:
    """`shopseg banners RUN --cpc C` keeps the run's other [banners] settings; a config file replaces them."""
    import json

    from shopseg.cli import _run_settings

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "shopseg.duckdb").write_bytes(b"")
    cfg = {"banners": {"margin": 0.55, "ctr": 0.02}, "impact": {"retention_uplift": 0.2}}
    (run_dir / "manifest.json").write_text(json.dumps({"config": cfg}), encoding="utf-8")
    assert _run_settings(run_dir, None, {"banners.cpc": None}) is None  # nothing given: the run's own
    got = _run_settings(run_dir, None, {"banners.cpc": 0.9, "banners.margin": None})
    assert got.banners.cpc == 0.9 and got.banners.margin == 0.55 and got.banners.ctr == 0.02
    assert _run_settings(run_dir, None, {"impact.aov_uplift": 0.1}).impact.retention_uplift == 0.2
    toml = tmp_path / "c.toml"
    toml.write_text("[banners]\ncpc = 0.4\n", encoding="utf-8")
    from_file = _run_settings(run_dir, toml, {"banners.margin": 0.3})
    default_ctr = type(from_file.banners)().ctr
    assert from_file.banners.cpc == 0.4 and from_file.banners.margin == 0.3 and from_file.banners.ctr == default_ctr
