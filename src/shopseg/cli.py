"""Command-line interface: a thin layer over the library. Errors become one paragraph and exit code 2."""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
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


def _run(inputs: list[str], out: Path, config: Path | None, overrides: dict[str, Any], quiet: bool) -> None:
    from shopseg.config import load_config
    from shopseg.pipeline import run

    cfg = load_config(config, overrides)
    if quiet:
        result = run(inputs, out, cfg)
    else:
        prog, update = _progress()
        with prog:
            result = run(inputs, out, cfg, progress=update)
    m = result.manifest
    t = Table(title=f"{len(result.profiles)} segments (k chosen: {m['segmentation']['reason'].split(':')[0]})")
    for col in ("segment", "name", "customers", "revenue share", "median recency", "median orders"):
        t.add_column(col)
    for r in result.profiles.itertuples():
        t.add_row(
            str(r.segment),
            str(r.name),
            f"{r.size:,}",
            f"{r.share_revenue:.1%}",
            f"{r.median_recency_days:.0f} d",
            f"{r.median_frequency:.0f}",
        )
    out_console.print(t)
    if result.recommendation_evaluation is not None and not result.recommendation_evaluation.empty:
        e = Table(
            title=f"Recommendations, {m['recommendation_evaluation']['users']:,} customers on the hold-out "
            f"(top-{m['recommendation_evaluation']['k']})"
        )
        for col in ("method", "precision", "recall", "hit rate", "coverage"):
            e.add_column(col)
        for r in result.recommendation_evaluation.itertuples():
            e.add_row(
                str(r.method),
                f"{r.precision:.4f}",
                f"{r.recall:.4f}",
                f"{r.hit_rate:.3f}",
                f"{r.coverage:.3f}",
            )
        out_console.print(e)
    rows = m["rows"]
    out_console.print(
        f"{rows['input_rows']:,} input rows = {rows['clean_rows']:,} clean + {rows['quarantined_rows']:,} quarantined; "
        f"{rows['customers']:,} customers; {m['timings']['total']:.1f} s"
    )
    for w in m["warnings"]:
        out_console.print(f"[yellow]warning:[/] {w}")
    out_console.print(f"Report: {result.report.resolve()}")
    out_console.print(f"CRM file: {(result.out / 'segments.csv').resolve()}")


@app.command("run")
def run_cmd(
    inputs: Annotated[list[str], typer.Argument(help="Files, folders or globs (CSV, Parquet, Excel).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory (default: out/<input name>).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")] = None,
    k: Annotated[int | None, typer.Option("--k", help="Force this number of segments.")] = None,
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
        seed=seed,
        outliers=outliers,
        no_header=no_header,
    )
    target = out or Path("out") / Path(inputs[0].rstrip("/*")).name.split(".")[0]
    _run(inputs, target, config, ov, quiet)


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
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
        return 2
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
