"""The dashboard: every page in-process with Streamlit's AppTest (numbers reconciled with the run), the upload
checks, and the running app in a real headless Chromium (no console errors, every chart drawn, customer lookup
and upload driven through the page, screenshots saved under test-artifacts/)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import shopseg
from service_support import ARTIFACTS, CHROMIUM_ARGS, chromium_path, free_port, shared_run, stop, wait_http
from shopseg.cli import main
from shopseg.errors import DataError, InputError
from shopseg.serve import dashboard
from shopseg.serve.rundir import RunData, save_upload

APP = Path(dashboard.__file__).resolve()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def manifest(run_dir: Path) -> dict[str, object]:
    m: dict[str, object] = json.loads((run_dir / "manifest.json").read_text())
    return m


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated shop (planted segments) as a CSV in the Online Retail layout, to upload."""
    path = tmp_path_factory.mktemp("upload") / "small_shop.csv"
    shopseg.generate_shop(150, seed=3).transactions.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module", autouse=True)
def _apptest_tmp() -> Iterator[None]:
    yield
    # AppTest keeps a module-level TemporaryDirectory; remove it here rather than warn at interpreter exit
    from streamlit.testing.v1 import app_test

    app_test.TMP_DIR.cleanup()


def _app(run_dir: Path | None, **state: object) -> object:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["run_dir"] = str(run_dir) if run_dir else ""
    for k, v in state.items():
        at.session_state[k] = v
    return at


def _page(at: object, name: str) -> None:
    at.sidebar.radio(key="page").set_value(name).run()  # type: ignore[attr-defined]
    assert not at.exception, at.exception  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------ in-process


def test_overview_reconciles_with_the_run(run_dir: Path, manifest: dict[str, object]) -> None:
    at = _app(run_dir)
    at.run()  # type: ignore[attr-defined]
    assert not at.exception and not at.error  # type: ignore[attr-defined]
    metrics = {m.label: m.value for m in at.metric}  # type: ignore[attr-defined]
    rows = manifest["rows"]
    assert isinstance(rows, dict)
    crm = pd.read_parquet(run_dir / "segments.parquet")
    assert metrics["Customers"] == f"{len(crm):,}"
    assert metrics["Segments"] == str(crm["segment"].nunique())
    assert metrics["Revenue (clean)"] == f"{crm['monetary'].sum():,.0f}"
    assert metrics["Input rows"] == f"{rows['input_rows']:,}"
    assert metrics["Quarantined rows"] == f"{rows['quarantined_rows']:,}"
    assert any("reconciled" in c.value and "NOT" not in c.value for c in at.caption)  # type: ignore[attr-defined]
    assert len(at.get("plotly_chart")) == 2  # type: ignore[attr-defined]  # sizes/value + quarantine reasons


def test_segments_page_shows_each_segment(run_dir: Path) -> None:
    at = _app(run_dir)
    at.run()  # type: ignore[attr-defined]
    _page(at, "Segments")
    box = at.selectbox(key="segment")  # type: ignore[attr-defined]
    prof = RunData.open(run_dir)
    try:
        assert box.options == [
            f"{s}: {n}" for s, n in zip(prof.profiles["segment"], prof.profiles["name"], strict=True)
        ]
        last = prof.segment_ids[-1]
        box.set_value(last).run()
        text = " ".join(m.value for m in at.markdown)  # type: ignore[attr-defined]
        assert f"{last}: {prof.profiles['name'].iloc[-1]}" in text
        assert prof.profiles["action"].iloc[-1] in text
    finally:
        prof.close()
    assert len(at.get("plotly_chart")) == 2  # type: ignore[attr-defined]  # heat map + top products
    frames = [f.value for f in at.dataframe]  # type: ignore[attr-defined]
    assert any("feature" in f.columns and "z" in f.columns for f in frames)  # the profile
    top = RunData.open(run_dir)
    try:
        want = [p["product_id"] for p in top.segment(last, 20)["top_products"]]
    finally:
        top.close()
    assert any("product_id" in f.columns and f["product_id"].tolist() == want for f in frames)


def test_customer_lookup(run_dir: Path) -> None:
    crm = pd.read_parquet(run_dir / "segments.parquet")
    row = crm.iloc[10]
    at = _app(run_dir)
    at.run()  # type: ignore[attr-defined]
    _page(at, "Customer lookup")
    at.text_input(key="customer_id").input(row["customer_id"])  # type: ignore[attr-defined]
    at.button[0].click().run()  # type: ignore[attr-defined]
    assert not at.error  # type: ignore[attr-defined]
    text = " ".join(m.value for m in at.markdown)  # type: ignore[attr-defined]
    assert f"Segment {row['segment']}: <b>{row['segment_name']}</b>" in text
    metrics = {m.label: m.value for m in at.metric}  # type: ignore[attr-defined]
    assert metrics["Orders"] == f"{row['frequency']:,.0f}"
    assert metrics["Days since last order"] == f"{row['recency_days']:,.0f}"
    history = at.dataframe[1].value  # type: ignore[attr-defined]
    assert history["order_id"].nunique() == row["frequency"]
    assert history["amount"].sum() == pytest.approx(row["monetary"])
    assert len(at.get("plotly_chart")) == 1  # type: ignore[attr-defined]
    at.text_input(key="customer_id").input("nobody-here")  # type: ignore[attr-defined]
    at.button[0].click().run()  # type: ignore[attr-defined]
    assert "customer 'nobody-here' is not in this run" in at.error[0].value  # type: ignore[attr-defined]


def test_k_selection_page(run_dir: Path) -> None:
    at = _app(run_dir)
    at.run()  # type: ignore[attr-defined]
    _page(at, "Choosing k")
    sel = RunData.open(run_dir)
    try:
        k = sel.k_selection()
    finally:
        sel.close()
    assert any(k["reason"] in m.value for m in at.markdown)  # type: ignore[attr-defined]
    stability = json.loads((run_dir / "model" / "segmenter.json").read_text()).get("stability")
    # the index curves, and the bootstrap stability when the run computed it
    assert len(at.get("plotly_chart")) == 1 + bool(stability)  # type: ignore[attr-defined]
    assert at.dataframe[0].value["k"].tolist() == k["table"]["k"].tolist()  # type: ignore[attr-defined]


def test_insights_page(run_dir: Path) -> None:
    at = _app(run_dir)
    at.run()  # type: ignore[attr-defined]
    _page(at, "Insights")
    path = run_dir / "insights.json"
    if not path.is_file():
        assert "no insights" in at.info[0].value  # type: ignore[attr-defined]
        return
    ins = json.loads(path.read_text())
    charts = at.get("plotly_chart")  # type: ignore[attr-defined]
    assert len(charts) == sum(bool(ins.get(k)) for k in ("hours", "weekdays"))
    if ins.get("buyers"):
        assert at.dataframe[0].value["buyers"].tolist() == [b["buyers"] for b in ins["buyers"]]  # type: ignore[attr-defined]


def test_a_wrong_run_folder_gives_the_library_message(tmp_path: Path) -> None:
    at = _app(tmp_path / "missing")
    at.run()  # type: ignore[attr-defined]
    assert "does not exist" in at.error[0].value  # type: ignore[attr-defined]


@pytest.mark.slow
def test_new_run_from_an_upload(shop_csv: Path, tmp_path: Path) -> None:
    at = _app(None, runs_dir=str(tmp_path / "runs"), max_upload_mb=50)
    at.run()  # type: ignore[attr-defined]
    _page(at, "New run")
    at.file_uploader(key="upload").set_value(  # type: ignore[attr-defined]
        ("small_shop.csv", shop_csv.read_bytes(), "text/csv")
    ).run()
    at.number_input(key="k").set_value(4).run()  # type: ignore[attr-defined]
    at.button(key="start").click().run()  # type: ignore[attr-defined]
    assert not at.exception and not at.error, (at.exception, at.error)  # type: ignore[attr-defined]
    assert "Run finished: 150 customers in 4 segments" in at.success[0].value  # type: ignore[attr-defined]
    out = tmp_path / "runs" / "small_shop"
    m = json.loads((out / "manifest.json").read_text())
    assert m["rows"]["customers"] == 150 and m["segmentation"]["k"] == 4
    assert (out / "input" / "small_shop.csv").read_bytes() == shop_csv.read_bytes()
    at.button(key="open-new").click().run()  # type: ignore[attr-defined]
    assert at.session_state["page"] == "Overview"  # type: ignore[attr-defined]
    assert {m.label: m.value for m in at.metric}["Customers"] == "150"  # type: ignore[attr-defined]


def test_upload_errors_match_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "orders.csv"
    bad.write_text("when,who_knows,amount\n2011-01-01,a,3\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "cli"), "--quiet"]) == 2
    cli_message = capsys.readouterr().err.strip().removeprefix("error: ")
    at = _app(None, runs_dir=str(tmp_path / "runs"))
    at.run()  # type: ignore[attr-defined]
    _page(at, "New run")
    at.file_uploader(key="upload").set_value(("orders.csv", bad.read_bytes(), "text/csv")).run()  # type: ignore[attr-defined]
    at.button(key="start").click().run()  # type: ignore[attr-defined]
    shown = at.error[0].value  # type: ignore[attr-defined]
    # the same message, naming the same missing column, apart from the file's path
    assert shown.split(" not found")[0] == " ".join(cli_message.split()).split(" not found")[0]


def test_save_upload_checks_name_type_and_size(tmp_path: Path) -> None:
    p = save_upload("../../etc/orders.csv", b"a,b\n1,2\n", tmp_path, max_bytes=100)
    assert p == tmp_path / "orders.csv" and p.read_bytes() == b"a,b\n1,2\n"
    with pytest.raises(InputError, match=r"unsupported file type '\.docx'"):
        save_upload("orders.docx", b"x", tmp_path, max_bytes=100)
    with pytest.raises(InputError, match="above the limit of 100"):
        save_upload("orders.csv", b"x" * 101, tmp_path, max_bytes=100)
    with pytest.raises(DataError, match="empty"):
        save_upload("orders.parquet", b"", tmp_path, max_bytes=100)


def test_dashboard_command_checks_the_run_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ browser


@pytest.fixture(scope="module")
def server(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    chromium_path()  # skip or fail early when there is no browser
    port = free_port()
    runs = tmp_path_factory.mktemp("dash-runs")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shopseg.cli",
            "dashboard",
            str(run_dir),
            "--port",
            str(port),
            "--runs-dir",
            str(runs),
            "--max-upload-mb",
            "20",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/_stcore/health", 90, proc)
        yield url
    finally:
        stop(proc)


def _browser_page(p: object, server: str) -> tuple[object, object, list[str]]:
    browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)  # type: ignore[attr-defined]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    def offline(request: object) -> None:  # the app works offline: nothing but the local server is asked
        url = str(request.url)  # type: ignore[attr-defined]
        if not url.startswith((server, "data:", "blob:", "ws://127.0.0.1")):
            problems.append(f"request outside the server: {url}")

    page.on("request", offline)
    return browser, page, problems


def _wait_charts(page: object, n: int) -> None:
    page.wait_for_function(  # type: ignore[attr-defined]
        f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n}", timeout=60_000
    )


@pytest.mark.slow
def test_dashboard_in_a_real_browser(server: str, run_dir: Path, shop_csv: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    crm = pd.read_parquet(run_dir / "segments.parquet")
    with sync_playwright() as p:
        browser, page, problems = _browser_page(p, server)
        try:
            page.goto(server)  # type: ignore[attr-defined]
            expect(page.get_by_role("heading", name="Overview")).to_be_visible(timeout=60_000)  # type: ignore[attr-defined]
            _wait_charts(page, 2)
            assert page.locator(".js-plotly-plot").count() == 2  # type: ignore[attr-defined]
            page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)  # type: ignore[attr-defined]

            # customer lookup through the page
            page.get_by_text("Customer lookup", exact=True).click()  # type: ignore[attr-defined]
            box = page.get_by_label("Customer id")  # type: ignore[attr-defined]
            row = crm.iloc[5]
            box.fill(row["customer_id"])
            page.get_by_role("button", name="Look up").click()  # type: ignore[attr-defined]
            card = page.locator("#customer-card")  # type: ignore[attr-defined]
            expect(card).to_contain_text(str(row["segment_name"]), timeout=60_000)
            _wait_charts(page, 1)
            expect(page.get_by_text("Purchase history")).to_be_visible()  # type: ignore[attr-defined]
            page.screenshot(path=str(ARTIFACTS / "dashboard-customer.png"), full_page=True)  # type: ignore[attr-defined]

            # a new run from an upload
            page.get_by_text("New run", exact=True).click()  # type: ignore[attr-defined]
            page.locator("input[type=file]").set_input_files(str(shop_csv))  # type: ignore[attr-defined]
            expect(page.get_by_text("small_shop.csv")).to_be_visible(timeout=30_000)  # type: ignore[attr-defined]
            page.get_by_role("button", name="Run", exact=True).click()  # type: ignore[attr-defined]
            expect(page.get_by_text("Run finished: 150 customers")).to_be_visible(timeout=180_000)  # type: ignore[attr-defined]
            page.screenshot(path=str(ARTIFACTS / "dashboard-new-run.png"), full_page=True)  # type: ignore[attr-defined]
        finally:
            browser.close()  # type: ignore[attr-defined]
    assert problems == []
