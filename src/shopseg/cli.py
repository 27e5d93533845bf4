"""Command-line interface: a thin layer over the library. Errors become one paragraph and exit code 2."""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shopseg.errors import ShopsegError

app = typer.Typer(
    name="shopseg",
    help="From a raw shop export to named customer segments, recommendations, a report and a CRM file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
out_console = Console()


def _overrides(**kw: Any) -> dict[str, Any]:
    cols = {
        "customer_id": kw.pop("customer_col"),
        "order_id": kw.pop("order_col"),
        "product_id": kw.pop("product_col"),
        "product_name": kw.pop("product_name_col"),
        "quantity": kw.pop("quantity_col"),
        "unit_price": kw.pop("price_col"),
        "amount": kw.pop("amount_col"),
        "ts": kw.pop("date_col"),
        "country": kw.pop("country_col"),
        "category": kw.pop("category_col"),
    }
    out: dict[str, Any] = {f"input.columns.{k}": v for k, v in cols.items() if v is not None}
    names = kw.pop("names")
    out.update(
        {
            "input.delimiter": kw.pop("delimiter"),
            "input.encoding": kw.pop("encoding"),
            "input.names": [n.strip() for n in names.split(",")] if names else None,
            "input.date_format": kw.pop("date_format"),
            "input.sheet": kw.pop("sheet"),
            "features.as_of": kw.pop("as_of"),
            "segment.k": kw.pop("k"),
            "segment.algorithm": kw.pop("algorithm"),
            "segment.seed": kw.pop("seed"),
            "clean.outliers": kw.pop("outliers"),
        }
    )
    if kw.pop("no_header"):
        out["input.header"] = False
    return out


def _progress() -> tuple[Progress, Any]:
    prog = Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    task = prog.add_task("starting", total=1)

    def update(step: str, i: int, n: int) -> None:
        prog.update(task, description=step, completed=i, total=n)

    return prog, update


def _print_recommendations(info: dict[str, Any], k: int | None = None) -> None:
    """One table per evaluation mode (every recommender on the same split) and the method behind the lists;
    the metrics at the k of the selecting metric (10 for the default ndcg@10)."""
    if k is None:
        k = int(str(info.get("metric") or "ndcg@10").partition("@")[2] or 10)
    titles = {"all": "all items", "new": "new items (bought products excluded)"}
    metrics = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage", "novelty")
    for mode, rows in (info.get("tables") or {}).items():
        if not rows:
            continue
        users = (info.get("users") or {}).get(mode, 0)
        e = Table(title=f"Recommendations, {titles.get(mode, mode)}: {users:,} customers on the hold-out (top-{k})")
        # method names are never cut (segment_top and segment_lift would both read "segment…")
        e.add_column("method", no_wrap=True, min_width=max(len(str(r["method"])) for r in rows))
        for metric in metrics:
            e.add_column(metric.replace("_", " "))
        best = max(rows, key=lambda r: r.get(info.get("metric", f"ndcg@{k}"), 0) or 0)["method"]
        for r in rows:
            name = f"[bold]{r['method']}[/]" if r["method"] == best else str(r["method"])
            e.add_row(name, *(f"{r[f'{metric}@{k}']:.4f}" for metric in metrics))
        out_console.print(e)
    if info.get("method"):
        out_console.print(f"recommendations.parquet: {info['method']} ({info.get('reason', '')})")


def _run(
    inputs: list[str],
    out: Path,
    config: Path | None,
    overrides: dict[str, Any],
    quiet: bool,
    *,
    events: list[str] | None = None,
    customers: list[str] | None = None,
) -> None:
    from shopseg.config import load_config
    from shopseg.pipeline import run

    cfg = load_config(config, overrides)
    if quiet:
        result = run(inputs, out, cfg, events=events or [], customers=customers or [])
    else:
        prog, update = _progress()
        with prog:
            result = run(inputs, out, cfg, events=events or [], customers=customers or [], progress=update)
    m = result.manifest
    t = Table(title=f"{len(result.profiles)} segments (k chosen: {m['segmentation']['reason'].split(':')[0]})")
    # (column, profile field, format): order figures when the run has them, else behaviour from events
    cols = [
        ("revenue share", "share_revenue", "{:.1%}"),
        ("median recency", "median_recency_days", "{:.0f} d"),
        ("median orders", "median_frequency", "{:.0f}"),
        ("median sessions", "median_sessions", "{:.0f}"),
        ("median purchases", "median_purchase_count", "{:.0f}"),
    ]
    # a column without any value (revenue share of a coupon-workbook run: no amounts) is left out, not "nan%"
    shown = [c for c in cols if c[1] in result.profiles.columns and result.profiles[c[1]].notna().any()]
    if "median_frequency" in result.profiles.columns:
        shown = [c for c in shown if c[1] != "median_purchase_count"]
    for col in ("segment", "name", "customers", *(c[0] for c in shown)):
        t.add_column(col)
    for r in result.profiles.itertuples():
        t.add_row(str(r.segment), str(r.name), f"{r.size:,}", *(fmt.format(getattr(r, f)) for _, f, fmt in shown))
    out_console.print(t)
    _print_recommendations(m.get("recommendation_evaluation") or {})
    rows = m["rows"]
    by_source = rows.get("by_source") or {}
    if len(by_source) > 1:
        for name, r in by_source.items():
            out_console.print(
                f"{name}: {r['input_rows']:,} input rows = {r['clean_rows']:,} clean + {r['quarantined_rows']:,} "
                "quarantined"
            )
        out_console.print(f"{rows['customers']:,} customers; {m['timings']['total']:.1f} s")
    else:
        out_console.print(
            f"{rows['input_rows']:,} input rows = {rows['clean_rows']:,} clean + {rows['quarantined_rows']:,} "
            f"quarantined; {rows['customers']:,} customers; {m['timings']['total']:.1f} s"
        )
    for w in m["warnings"]:
        out_console.print(f"[yellow]warning:[/] {w}")
    out_console.print(f"Report: {result.report.resolve()}")
    out_console.print(f"CRM file: {(result.out / 'segments.csv').resolve()}")
    if "banners" in m["files"]:
        out_console.print(f"Banner table: {(result.out / 'banners.csv').resolve()} (shopseg banners, shopseg impact)")


@app.command("run")
def run_cmd(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Files, folders or globs (CSV, Parquet, Excel): order lines, or event logs / customer tables "
            "recognised by their columns.",
            show_default=False,
        ),
    ] = None,
    events: Annotated[
        list[str] | None,
        typer.Option("--events", help="Event log (clickstream) file, folder or glob; repeatable.", show_default=False),
    ] = None,
    customers: Annotated[
        list[str] | None,
        typer.Option(
            "--customers", help="Customer table (attributes) file or workbook; repeatable.", show_default=False
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory (default: out/<input name>).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")] = None,
    k: Annotated[int | None, typer.Option("--k", help="Force this number of segments.")] = None,
    algorithm: Annotated[
        str | None,
        typer.Option(
            "--algorithm",
            help="Segmentation algorithm: kmeans (default) | minibatch | ward | gmm | hdbscan | rfm | auto.",
            show_default=False,
        ),
    ] = None,
    as_of: Annotated[
        datetime | None, typer.Option("--as-of", help="Reference date (default: day after last order).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for every random step.")] = None,
    outliers: Annotated[str | None, typer.Option("--outliers", help="off | flag | remove outlier customers.")] = None,
    customer_col: Annotated[
        str | None,
        typer.Option("--customer-col", help="Source column with the customer id.", show_default=False),
    ] = None,
    order_col: Annotated[
        str | None,
        typer.Option("--order-col", help="Source column with the order/invoice id.", show_default=False),
    ] = None,
    product_col: Annotated[
        str | None,
        typer.Option("--product-col", help="Source column with the product code.", show_default=False),
    ] = None,
    product_name_col: Annotated[
        str | None,
        typer.Option("--product-name-col", help="Source column with the product name.", show_default=False),
    ] = None,
    quantity_col: Annotated[
        str | None,
        typer.Option("--quantity-col", help="Source column with the quantity.", show_default=False),
    ] = None,
    price_col: Annotated[
        str | None, typer.Option("--price-col", help="Source column with the unit price.", show_default=False)
    ] = None,
    amount_col: Annotated[
        str | None,
        typer.Option("--amount-col", help="Source column with the line total.", show_default=False),
    ] = None,
    date_col: Annotated[
        str | None, typer.Option("--date-col", help="Source column with the order date.", show_default=False)
    ] = None,
    country_col: Annotated[
        str | None, typer.Option("--country-col", help="Source column with the country.", show_default=False)
    ] = None,
    category_col: Annotated[
        str | None,
        typer.Option("--category-col", help="Source column with the category.", show_default=False),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option("--delimiter", help="CSV delimiter (detected by default; '\\s+' = spaces).", show_default=False),
    ] = None,
    encoding: Annotated[
        str | None, typer.Option("--encoding", help="CSV encoding (detected by default).", show_default=False)
    ] = None,
    no_header: Annotated[bool, typer.Option("--no-header", help="CSV files have no header line.")] = False,
    names: Annotated[
        str | None,
        typer.Option("--names", help="Comma-separated column names for header-less CSV.", show_default=False),
    ] = None,
    date_format: Annotated[
        str | None,
        typer.Option("--date-format", help="strptime format of dates (detected).", show_default=False),
    ] = None,
    sheet: Annotated[
        str | None, typer.Option("--sheet", help="Excel sheet name (default: the first).", show_default=False)
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="duckdb (default) | spark: the engine that reads, cleans and computes features "
            "(spark: pip install 'shopseg[spark]').",
            show_default=False,
        ),
    ] = None,
    spark_master: Annotated[
        str | None,
        typer.Option(
            "--spark-master",
            help="Spark master for --engine spark: local[*] (default), spark://host:7077, yarn …",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run the whole pipeline: ingest, clean, features, segments, profiles, recommendations, report."""
    ov = _overrides(
        customer_col=customer_col,
        order_col=order_col,
        product_col=product_col,
        product_name_col=product_name_col,
        quantity_col=quantity_col,
        price_col=price_col,
        amount_col=amount_col,
        date_col=date_col,
        country_col=country_col,
        category_col=category_col,
        delimiter=delimiter,
        encoding=encoding,
        names=names,
        date_format=date_format,
        sheet=sheet,
        as_of=as_of,
        k=k,
        algorithm=algorithm,
        seed=seed,
        outliers=outliers,
        no_header=no_header,
    )
    ov.update({"engine.name": engine, "engine.spark_master": spark_master})
    given = [*(inputs or []), *(events or []), *(customers or [])]
    if not given:
        from shopseg.errors import ConfigError

        raise ConfigError("no input given; pass order files, --events FILE and/or --customers FILE")
    target = out or Path("out") / Path(given[0].rstrip("/*")).name.split(".")[0]
    _run(inputs or [], target, config, ov, quiet, events=events, customers=customers)


@app.command("evaluate")
def evaluate_cmd(
    target: Annotated[
        list[str],
        typer.Argument(help="A finished run folder (re-scores its hold-out), or input files (runs the pipeline)."),
    ],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory when INPUT files are given.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file ([recommend]).")] = None,
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods", help="Comma-separated recommenders to compare, e.g. blend,item_knn,als.", show_default=False
        ),
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="Metric that picks the best, e.g. recall@10.", show_default=False)
    ] = None,
    holdout_days: Annotated[
        int | None, typer.Option("--holdout-days", help="Days held out (input files only).", show_default=False)
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Compare the recommenders on a time split: one table per mode (all items, new items)."""
    ov: dict[str, Any] = {
        "recommend.methods": [m.strip() for m in methods.split(",") if m.strip()] if methods else None,
        "recommend.metric": metric,
        "recommend.holdout_days": holdout_days,
    }
    run_dir = Path(target[0])
    if len(target) == 1 and run_dir.is_dir() and (run_dir / "manifest.json").is_file():
        _evaluate_run_dir(run_dir, config, ov)
        return
    overrides = {k: v for k, v in ov.items() if v is not None}
    overrides["recommend.evaluate"] = True
    dest = out or Path("out") / Path(target[0].rstrip("/*")).name.split(".")[0]
    _run(target, dest, config, overrides, quiet)


def _evaluate_run_dir(run_dir: Path, config: Path | None, ov: dict[str, Any]) -> None:
    """Print a run's stored evaluation, or re-score its hold-out when settings are given."""
    import json

    from shopseg.config import load_config
    from shopseg.errors import ConfigError
    from shopseg.recommend.methods import threads_for
    from shopseg.recommend.runner import evaluate_run

    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    if config is None and all(v is None for v in ov.values()):
        info = manifest.get("recommendation_evaluation") or {}
        if not info.get("tables"):
            raise ConfigError(f"the run in '{run_dir}' has no recommendation evaluation; pass --methods to score it")
        _print_recommendations(info)
        return
    if ov["recommend.holdout_days"] is None:
        stored = ((manifest.get("config") or {}).get("recommend") or {}).get("holdout_days")
        ov = {**ov, "recommend.holdout_days": stored}
    cfg = load_config(config, ov)
    info = evaluate_run(
        run_dir,
        cfg.recommend,
        seed=cfg.segment.seed,
        threads=threads_for(cfg.recommend.threads, cfg.engine.threads),
        memory_limit=cfg.engine.memory_limit,
    )
    if info.get("best"):
        info["method"] = info["best"]
        info["reason"] = f"best {cfg.recommend.metric}; the run's own lists are unchanged"
    _print_recommendations(info)


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory.")] = Path("out/demo"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run the pipeline on the bundled real sample (600 Online Retail customers, CC BY 4.0)."""
    from shopseg.datasets import sample_path

    _run([str(sample_path())], out, None, {}, quiet)


@app.command("score")
def score_cmd(
    model: Annotated[Path, typer.Argument(help="A run's model/ folder (or the run folder).")],
    inputs: Annotated[list[str], typer.Argument(help="Order lines of the customers to score.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out/scored"),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")] = None,
    as_of: Annotated[datetime | None, typer.Option("--as-of", help="Reference date.")] = None,
) -> None:
    """Assign segments to the customers of a new file with a saved model alone."""
    from shopseg.config import load_config
    from shopseg.pipeline import score

    model_dir = model / "model" if (model / "model" / "segmenter.json").is_file() else model
    frame = score(model_dir, inputs, out, load_config(config, {"features.as_of": as_of}))
    counts = frame.groupby(["segment", "segment_name"]).size()
    for (seg, name), n in counts.items():
        out_console.print(f"segment {seg} ({name}): {n:,} customers")
    out_console.print(f"Scored file: {(out / 'segments.csv').resolve()}")


@app.command("migrate")
def migrate_cmd(
    model: Annotated[Path, typer.Argument(help="A run's model/ folder (or the run folder).")],
    old: Annotated[str, typer.Argument(help="Order lines of the earlier period (file, folder or glob).")],
    new: Annotated[str, typer.Argument(help="Order lines of the later period (file, folder or glob).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out/migration"),
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")] = None,
    as_of_old: Annotated[
        datetime | None, typer.Option("--as-of-old", help="Reference date of OLD (default: day after its last order).")
    ] = None,
    as_of_new: Annotated[
        datetime | None, typer.Option("--as-of-new", help="Reference date of NEW (default: day after its last order).")
    ] = None,
) -> None:
    """How customers moved between segments from OLD to NEW, scored with one saved model (matrix + Sankey)."""
    from shopseg.config import load_config
    from shopseg.profile.migrate import migrate

    m = migrate(model, [old], [new], out, load_config(config), old_as_of=as_of_old, new_as_of=as_of_new)
    t = Table(title="Customers moving between segments (rows: OLD, columns: NEW)")
    t.add_column("from \\ to")
    for c in m.counts.columns:
        t.add_column(str(c), justify="right")
    for label, row in m.counts.iterrows():
        t.add_row(str(label), *(f"{int(v):,}" for v in row))
    out_console.print(t)
    s = m.summary()
    out_console.print(
        f"{s['stayed']:,} stayed, {s['moved']:,} moved, {s['lost']:,} lost (only in OLD), "
        f"{s['new']:,} new (only in NEW)"
    )
    out_console.print(f"Sankey diagram: {(out / 'migration.html').resolve()}")
    out_console.print(f"Matrix: {(out / 'migration_matrix.csv').resolve()}")


@app.command("serve")
def serve_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (the --out of `shopseg run`).")],
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="SHOPSEG_API_KEY",
            help="Require this key in the X-API-Key header (or set SHOPSEG_API_KEY).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Worker processes, each with the run loaded (0: one per CPU core, at most 4).",
        ),
    ] = 0,
    max_body_kb: Annotated[int, typer.Option("--max-body-kb", help="Largest request body accepted, in KiB.")] = 1024,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="Log every request.")] = True,
) -> None:
    """Serve the scoring API over a run: segments, customers, scoring of new customers, similar items."""
    from shopseg.serve.api import serve

    serve(
        run_dir,
        host=host,
        port=port,
        api_key=api_key,
        workers=workers,
        max_body_bytes=max_body_kb * 1024,
        access_log=access_log,
    )


@app.command("dashboard")
def dashboard_cmd(
    run_dir: Annotated[Path | None, typer.Argument(help="A finished run folder to open first.")] = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8501,
    runs_dir: Annotated[
        Path, typer.Option("--runs-dir", help="Where runs started from the dashboard are written.")
    ] = Path("out/dashboard"),
    max_upload_mb: Annotated[int, typer.Option("--max-upload-mb", help="Largest upload accepted, in MB.")] = 200,
) -> None:
    """Open the dashboard (Streamlit): overview, segments, customer lookup, k selection and new runs."""
    from shopseg.serve.dashboard import launch

    code = launch(run_dir, host=host, port=port, runs_dir=runs_dir, max_upload_mb=max_upload_mb)
    raise typer.Exit(code)


@app.command("export")
def export_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (the --out of `shopseg run`).")],
    to: Annotated[
        str, typer.Option("--to", help="postgresql://user@host/db, or a folder for files.", show_default=False)
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="For a folder: csv, parquet, json, crm-tags or crm-properties.")
    ] = "csv",
    pseudonymise: Annotated[
        bool, typer.Option("--pseudonymise", help="Replace customer ids by salted SHA-256 pseudonyms.")
    ] = False,
    salt: Annotated[
        str | None,
        typer.Option(
            "--salt", envvar="SHOPSEG_PSEUDONYM_SALT", help="Secret salt of the pseudonyms.", show_default=False
        ),
    ] = None,
    min_segment_size: Annotated[
        int, typer.Option("--min-segment-size", help="Leave out segments with fewer customers.")
    ] = 1,
    schema: Annotated[str, typer.Option("--schema", help="PostgreSQL schema.")] = "public",
    table_prefix: Annotated[str, typer.Option("--table-prefix", help="PostgreSQL table name prefix.")] = "shopseg_",
    mode: Annotated[
        str, typer.Option("--mode", help="PostgreSQL: replace (only this run) or run (keep other runs).")
    ] = "replace",
) -> None:
    """Export segments, profiles, recommendations and the banner plan to PostgreSQL, files or CRM-ready CSV layouts."""
    from shopseg.errors import ConfigError
    from shopseg.export.crm import FILE_FORMATS, export_run

    if fmt not in FILE_FORMATS:
        raise ConfigError(f"unknown --format '{fmt}'; choose one of {', '.join(FILE_FORMATS)}")
    if mode not in ("replace", "run"):
        raise ConfigError(f"unknown --mode '{mode}'; choose replace or run")
    rep = export_run(
        run_dir,
        to,
        format=fmt,  # type: ignore[arg-type]
        pseudonymise=pseudonymise,
        salt=salt,
        min_segment_size=min_segment_size,
        schema=schema,
        table_prefix=table_prefix,
        mode=mode,  # type: ignore[arg-type]
    )
    t = Table(title=f"Export of run {rep.run_id}")
    t.add_column("table / file")
    t.add_column("rows", justify="right")
    for name, n in rep.rows.items():
        t.add_row(name, f"{n:,}")
    out_console.print(t)
    out_console.print(f"to {rep.target}", markup=False, highlight=False)
    for note in rep.notes:
        out_console.print(f"note: {note}", markup=False, highlight=False)
    if rep.pseudonymised:
        out_console.print("customer ids are pseudonymised (salted SHA-256); the salt is not stored")


@app.command("insights")
def insights_cmd(
    inputs: Annotated[
        list[str],
        typer.Argument(help="A finished run folder, or event / order files or a customer table (folders, globs)."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where input files are read for the insights (default: out/insights)."),
    ] = None,
    events: Annotated[
        list[str] | None, typer.Option("--events", help="Event log file(s), if not recognised.", show_default=False)
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")] = None,
    top: Annotated[int, typer.Option("--top", help="Rows shown per top list.")] = 5,
) -> None:
    """Shop insights: funnel, devices, peak hours, weekdays, top categories/brands, new vs returning buyers, coupons."""
    from shopseg.config import load_config
    from shopseg.insights import shop_insights

    is_run = len(inputs) == 1 and not events and (Path(inputs[0]) / "shopseg.duckdb").is_file()
    target = Path(inputs[0]) if is_run else (out or Path("out") / "insights")
    ins = shop_insights(inputs, None if is_run else target, load_config(config), events=events or [])
    for title, frame in ins.tables().items():
        shown = frame.head(top) if title.startswith("top_") else frame
        t = Table(title=title.replace("_", " "))
        for c in shown.columns:
            t.add_column(str(c), justify="left" if shown[c].dtype == object else "right")
        for row in shown.itertuples(index=False):
            t.add_row(*(_cell(v, str(c)) for v, c in zip(row, shown.columns, strict=True)))
        out_console.print(t)
    f = ins.rec_followup
    if f is not None:
        out_console.print(
            f"{f['share']:.1%} of the {f['buyers_after_cutoff']:,} buyers after {f['cutoff'][:10]} bought one of their "
            f"segment's top {f['list_length']} products (shop-wide top list: {f['baseline_shop_top_share']:.1%})"
        )
    for n in ins.notes:
        out_console.print(f"[yellow]note:[/] {n}")
    out_console.print(f"Insights: {(target / 'insights.json').resolve()}")


def _cell(v: Any, column: str) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return ""
        return f"{v:.1%}" if column.startswith(("share", "conversion")) or column.endswith("_rate") else f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _run_settings(run_dir: Path, config: Path | None, overrides: dict[str, Any]) -> Any:
    """The [banners]/[impact] settings: the run's own (None) unless a config file or an option is given; options
    alone change the run's own settings (the others stay as the run had them), a config file replaces them."""
    from shopseg.config import load_config
    from shopseg.insights.banners import load_run

    if config is not None:
        return load_config(config, overrides)
    if all(v is None for v in overrides.values()):
        return None
    return load_config(None, overrides, base=load_run(run_dir)[1])


@app.command("banners")
def banners_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML config file ([banners]); replaces the run's settings. Options alone change only what they name.",
        ),
    ] = None,
    margin: Annotated[float | None, typer.Option("--margin", help="Gross margin (0-1).", show_default=False)] = None,
    cpc: Annotated[float | None, typer.Option("--cpc", help="Price per click of the slot.", show_default=False)] = None,
    cpm: Annotated[
        float | None,
        typer.Option("--cpm", help="Price per 1,000 impressions (replaces CTR x CPC).", show_default=False),
    ] = None,
    aov: Annotated[
        float | None,
        typer.Option("--aov", help="Average order value (when the run has no order values).", show_default=False),
    ] = None,
    write: Annotated[bool, typer.Option("--write/--no-write", help="Rewrite RUN_DIR/banners.csv.")] = True,
) -> None:
    """Banner strategy per segment and slot: internal promotion vs selling the slot, with break-even CPC and AOV."""
    from shopseg.insights.banners import banners_for_run

    cfg = _run_settings(
        run_dir, config, {"banners.margin": margin, "banners.cpc": cpc, "banners.cpm": cpm, "banners.aov": aov}
    )
    res = banners_for_run(run_dir, cfg.banners if cfg is not None else None, write=write)
    t = Table(title="Banner slots: value per 1,000 impressions")
    cols = ("segment", "slot", "internal", "external", "ratio (interval)", "break-even CPC", "break-even AOV", "advice")
    for col in cols:
        t.add_column(col)

    def num(v: float, fmt: str = "{:,.2f}") -> str:
        return fmt.format(v) if v == v else "-"  # NaN: no order value

    for r in res.table.itertuples():
        t.add_row(
            f"{r.segment} {r.segment_name}",
            str(r.slot),
            num(r.internal_per_1000),
            num(r.external_per_1000),
            f"{r.ratio:.2f} ({r.ratio_low:.2f}-{r.ratio_high:.2f})" if r.ratio == r.ratio else "-",
            num(r.break_even_cpc),
            num(r.break_even_aov),
            str(r.recommendation),
        )
    out_console.print(t)
    for r in res.table.drop_duplicates("segment").itertuples():
        out_console.print(
            f"segment {r.segment}: feature {r.featured_products or '(no recommendations)'}; "
            f"best hours {r.best_hours or '(unknown)'}",
            markup=False,
            highlight=False,
        )
    for n in res.notes:
        out_console.print(f"note: {n}", markup=False, highlight=False)
    if write and not res.table.empty:
        out_console.print(f"Banner table: {(run_dir / 'banners.csv').resolve()}")


@app.command("impact")
def impact_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder.")],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="TOML config file ([impact]); replaces the run's settings. Options alone change only what they name.",
        ),
    ] = None,
    aov: Annotated[float | None, typer.Option("--aov", help="AOV uplift, e.g. 0.1.", show_default=False)] = None,
    retention: Annotated[
        float | None, typer.Option("--retention", help="Retention uplift, e.g. 0.05.", show_default=False)
    ] = None,
    orders: Annotated[
        float | None, typer.Option("--orders", help="Extra orders per customer a year.", show_default=False)
    ] = None,
) -> None:
    """Impact scenarios: each segment's yearly revenue change under AOV, retention and order uplifts."""
    from shopseg.insights.impact import impact_for_run

    cfg = _run_settings(
        run_dir, config, {"impact.aov_uplift": aov, "impact.retention_uplift": retention, "impact.extra_orders": orders}
    )
    figures, table = impact_for_run(str(run_dir), cfg.impact if cfg is not None else None)
    if table.empty:
        out_console.print("no impact scenarios: the run has no order values")
        return
    t = Table(title=f"Revenue change per year (data window {float(figures['years'].iloc[0]):.2f} years)")
    scenarios = list(dict.fromkeys(table["assumption"]))
    for col in ("segment", "customers", "orders/cust./yr", "AOV", "revenue/yr", *scenarios):
        t.add_column(col)
    for seg, g in table.groupby("segment", sort=True):
        r = g.iloc[0]
        by = dict(zip(g["assumption"], zip(g["revenue_change"], g["change_share"], strict=True), strict=True))
        t.add_row(
            f"{seg} {r['segment_name']}",
            f"{int(r['customers']):,}",
            f"{r['orders_per_customer_year']:.2f}",
            f"{r['aov']:,.2f}",
            f"{r['annual_revenue']:,.0f}",
            *(
                f"{by[a][0]:+,.0f} ({by[a][1]:+.0%})" if by[a][1] == by[a][1] else f"{by[a][0]:+,.0f}"
                for a in scenarios
            ),
        )
    out_console.print(t)


@app.command("version")
def version_cmd() -> None:
    """Print the shopseg version."""
    from importlib.metadata import version

    out_console.print(version("shopseg"))


def main(argv: list[str] | None = None) -> int:
    """Entry point: a ShopsegError becomes a one-paragraph message and exit code 2 (usage errors too)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=argv, prog_name="shopseg")
    except ShopsegError as exc:
        # the message is text, not markup: "[input.columns]" or "shopseg[spark]" must print as written
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True, markup=True)
        return 2
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    return 0


def command() -> None:  # pragma: no cover - the installed script; tests call main() in-process
    """The ``shopseg`` script: :func:`main`, then a quick exit. Once everything is written and closed, the
    interpreter's own teardown of the loaded libraries (DuckDB, Arrow, pandas, scikit-learn, plotly ...) takes
    another ~0.4 s on 2 cores, a twentieth of a run on Online Retail, for nothing: the exit handlers and
    finalizers run, the streams are flushed, and then the process ends. With other threads still running
    (which ``main`` never leaves) it exits the usual way."""
    import atexit
    import os
    import threading

    code = main()
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    command()
