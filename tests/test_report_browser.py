"""report.html in a real headless Chromium: no console errors, every chart drawn, the table of contents works,
every chart has an explanation in words, one colour per segment across all charts, and it prints (PDF and
screenshot saved under test-artifacts/)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service_support import ARTIFACTS, CHROMIUM_ARGS, chromium_path, shared_run
from shopseg.report.charts import PALETTE, segment_color

pytestmark = pytest.mark.slow

_TRACES = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
    section: gd.closest('section') ? gd.closest('section').id : null,
    traces: gd.data.map(t => ({
        name: t.name || null,
        color: t.marker ? (t.marker.color === undefined ? null : t.marker.color) : null,
        line: t.line && t.line.color ? t.line.color : null,
        x: Array.isArray(t.x) ? t.x.map(String) : null,
        y: Array.isArray(t.y) ? t.y.map(String) : null,
    })),
}))"""

_ORDER = """() => Array.from(document.querySelectorAll('main section')).map(s => ({
    id: s.id,
    seq: Array.from(s.querySelectorAll('p.explain, .plotly-graph-div')).map(e =>
        e.classList.contains('plotly-graph-div') ? 'chart' : 'explain'),
}))"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def page(run_dir: Path) -> Iterator[tuple[Any, list[str]]]:
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1300, "height": 900})
        problems: list[str] = []
        pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        pg.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
        # self-contained: nothing is fetched but the file itself
        pg.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:")) else problems.append(r.url))
        pg.goto((run_dir / "report.html").resolve().as_uri())
        try:
            yield pg, problems
        finally:
            browser.close()


def _n_charts(run_dir: Path) -> int:
    return (run_dir / "report.html").read_text(encoding="utf-8").count('class="plotly-graph-div"')


def test_every_chart_renders_without_errors(page: tuple[Any, list[str]], run_dir: Path) -> None:
    pg, problems = page
    n = _n_charts(run_dir)
    assert n >= 6
    pg.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {n}", timeout=60_000)
    assert pg.locator(".js-plotly-plot").count() == n
    # each chart drew its own SVG layer (3-D and WebGL charts too)
    assert pg.evaluate(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).every(g => g.querySelector('.main-svg'))"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert problems == []


def test_table_of_contents_links_resolve(page: tuple[Any, list[str]]) -> None:
    pg, _ = page
    hrefs = pg.eval_on_selector_all("nav.toc a", "els => els.map(e => e.getAttribute('href'))")
    assert len(hrefs) >= 8
    for h in hrefs:
        assert pg.locator(h).count() == 1, f"table of contents link {h} has no target"
    sections = pg.eval_on_selector_all("main section[id]", "els => els.map(e => '#' + e.id)")
    assert set(sections) <= set(hrefs), "every section is in the table of contents"


def test_every_chart_is_explained_in_words(page: tuple[Any, list[str]]) -> None:
    pg, _ = page
    for s in pg.evaluate(_ORDER):
        explained = False
        for kind in s["seq"]:
            if kind == "explain":
                explained = True
            else:
                assert explained, f"a chart in section #{s['id']} has no explanation before it"
                explained = False


def test_one_colour_per_segment_across_all_charts(page: tuple[Any, list[str]], run_dir: Path) -> None:
    """Traces and bars that stand for a segment ('3: Name') use that segment's colour from the one palette;
    no other series uses a segment's colour; the segment cards use it too."""
    pg, _ = page
    seg_label = re.compile(r"^(-?\d+): ")
    segment_colours = set(PALETTE)
    checked = 0
    for plot in pg.evaluate(_TRACES):
        for t in plot["traces"]:
            labels = t["x"] if t["x"] and all(seg_label.match(x) for x in t["x"]) else None
            labels = labels or (t["y"] if t["y"] and all(seg_label.match(y) for y in t["y"]) else None)
            named = seg_label.match(t["name"] or "")
            if named and isinstance(t["color"], str):
                assert t["color"] == segment_color(int(named.group(1))), (plot["section"], t["name"])
                checked += 1
            elif labels and isinstance(t["color"], list):
                want = [segment_color(int(seg_label.match(x).group(1))) for x in labels]  # type: ignore[union-attr]
                assert t["color"] == want, (plot["section"], labels)
                checked += 1
            else:
                for c in (t["color"], t["line"]):
                    if isinstance(c, str):
                        assert c not in segment_colours, f"{plot['section']}: a non-segment series uses {c}"
    assert checked >= 4
    cards = pg.eval_on_selector_all(
        ".card h3", "els => els.map(h => [h.textContent, getComputedStyle(h.parentElement).borderLeftColor])"
    )
    assert cards
    for title, css in cards:
        seg = int(title.split(":")[0])
        r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
        assert f"#{r:02x}{g:02x}{b:02x}" == segment_color(seg)


def test_the_report_prints(page: tuple[Any, list[str]], run_dir: Path) -> None:
    pg, problems = page
    pg.wait_for_function(
        f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {_n_charts(run_dir)}", timeout=60_000
    )
    pg.emulate_media(media="print")
    try:
        pg.wait_for_timeout(500)
        styles = pg.evaluate(
            """() => ({
                toc: getComputedStyle(document.querySelector('nav.toc')).display,
                header: getComputedStyle(document.querySelector('header')).backgroundColor,
                widest: Math.max(...Array.from(document.querySelectorAll('.js-plotly-plot .main-svg'))
                                   .map(s => s.getBoundingClientRect().width)),
            })"""
        )
        assert styles["toc"] == "none"
        assert styles["header"] in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)")
        assert styles["widest"] <= 720  # charts were refitted to the printed page's width
        ARTIFACTS.mkdir(exist_ok=True)
        pdf = pg.pdf(path=str(ARTIFACTS / "report.pdf"), format="A4", print_background=True)
        assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") >= 3
    finally:
        pg.emulate_media(media="screen")
    assert problems == []
