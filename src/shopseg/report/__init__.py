"""report.html: self-contained (plotly.js inline once), offline, built from the run's tables.

Context building happens here; the Jinja template holds no logic beyond loops and formatting.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from shopseg.backends.duckdb import quote
from shopseg.report import charts

if TYPE_CHECKING:
    from shopseg.pipeline import RunState

__all__ = ["build_report"]

_SAMPLE = 5000


def _fig_html(fig: Any) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


def _table(frame: pd.DataFrame, floatfmt: str = "{:,.3f}", pct: tuple[str, ...] = ()) -> str:
    def fmt(col: str, v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        if col in pct and isinstance(v, (int, float)):
            return f"{v:.1%}"
        if isinstance(v, (float, np.floating)):
            return floatfmt.format(v)
        if isinstance(v, (int, np.integer)):
            return f"{v:,}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="t">{fmt(c, v)}</td>' if isinstance(v, str) else f"<td>{fmt(c, v)}</td>"
            for c, v in zip(frame.columns, row, strict=True)
        )
        + "</tr>"
        for row in frame.itertuples(index=False)
    )
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _data_summary(s: RunState) -> dict[str, Any]:
    b = s.backend
    raw_cols = [c for c, _ in b.columns("raw_transactions") if c not in ("_row_id", "_source")]
    parts = ", ".join(f"count(*) - count(NULLIF(trim(CAST({quote(c)} AS VARCHAR)), ''))" for c in raw_cols)
    row = b.con.execute(f"SELECT count(*), {parts} FROM raw_transactions").fetchall()[0]
    assert row is not None
    total = int(row[0])
    missing = pd.DataFrame(
        {
            "column": raw_cols,
            "mapped to": [
                next((k for k, v in s.ingest.mapping.source.items() if v == c), "") if s.ingest else ""
                for c in raw_cols
            ],
            "missing": [int(x) for x in row[1:]],
        }
    )
    missing["share"] = missing["missing"] / max(total, 1)
    rng = b.con.execute("SELECT min(ts), max(ts) FROM transactions_flagged").fetchall()[0]
    clean_rng = b.con.execute(
        "SELECT min(ts), max(ts), count(DISTINCT customer_id), count(DISTINCT order_id), "
        "sum(quantity * unit_price) FROM transactions"
    ).fetchall()[0]
    assert rng is not None and clean_rng is not None
    countries = b.df(
        "SELECT country, sum(quantity * unit_price) AS revenue, count(DISTINCT customer_id) AS customers "
        "FROM transactions WHERE country IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 10"
    )
    return {
        "rows": total,
        "missing_table": _table(missing, pct=("share",)),
        "date_min": rng[0],
        "date_max": rng[1],
        "clean_min": clean_rng[0],
        "clean_max": clean_rng[1],
        "customers": int(clean_rng[2] or 0),
        "orders": int(clean_rng[3] or 0),
        "revenue": float(clean_rng[4] or 0),
        "countries_chart": _fig_html(charts.top_countries(countries)) if not countries.empty else "",
    }


def build_report(s: RunState, path: Path) -> None:
    """Render the run into one self-contained HTML file (written atomically)."""
    import plotly.offline

    assert s.profiles is not None and s.segmenter is not None and s.features is not None
    assert s.labels is not None and s.clean is not None and s.ingest is not None
    prof = s.profiles
    names = {int(r.segment): str(r.name) for r in prof.itertuples()}
    sel = s.segmenter.selection_
    frame = s.features.frame.copy()
    frame["segment"] = s.labels
    rng = np.random.default_rng(s.config.segment.seed)
    idx = rng.choice(len(frame), size=min(_SAMPLE, len(frame)), replace=False)
    idx.sort()
    sample = frame.iloc[idx]
    x = s.segmenter.transform(sample)
    seg_feats = s.segmenter.preprocessor_.features
    heat_feats = [f for f in s.features.numeric if not f.startswith("spend_share_")]
    cards = []
    products = s.segment_products
    for r in prof.itertuples():
        top = []
        if products is not None:
            p = products[products["segment"] == r.segment].head(5)
            top = [
                f"{html.escape(str(t.product_name or t.product_id))} ({t.buyers} buyers, lift {t.lift:.1f})"
                for t in p.itertuples()
            ]
        cards.append(
            {
                "segment": int(r.segment),
                "name": r.name,
                "action": r.action,
                "size": int(r.size),
                "share_customers": float(r.share_customers),
                "share_revenue": float(r.share_revenue),
                "earned_by": r.earned_by,
                "color": charts.segment_color(int(r.segment)),
                "top_products": top,
                "recency": float(getattr(r, "median_recency_days", np.nan)),
                "frequency": float(getattr(r, "median_frequency", np.nan)),
                "monetary": float(getattr(r, "median_monetary", np.nan)),
            }
        )
    profile_cols = ["segment", "name", "size", "share_customers", "share_revenue"] + [
        f"mean_{f}"
        for f in ("recency_days", "frequency", "monetary", "avg_order_value", "tenure_days")
        if f"mean_{f}" in prof.columns
    ]
    recon = s.clean.reconciliation[["code", "description", "rows", "share"]]
    rec = None
    if s.rec_eval is not None and not s.rec_eval.empty:
        rec = {
            "table": _table(s.rec_eval[["method", "precision", "recall", "hit_rate", "coverage", "description"]]),
            "chart": _fig_html(charts.recommendation_eval(s.rec_eval)),
            "info": s.rec_info,
        }
    ctx = {
        "title": f"shopseg report: {', '.join(Path(i).name for i in s.inputs)[:120]}",
        "plotly_js": plotly.offline.get_plotlyjs(),
        "inputs": s.inputs,
        "as_of": s.features.as_of,
        "summary": _data_summary(s),
        "mapping": s.ingest.mapping.source,
        "recon_table": _table(recon, pct=("share",)),
        "input_rows": s.clean.input_rows,
        "clean_rows": s.clean.clean_rows,
        "quarantined_rows": s.clean.quarantined_rows,
        "k": s.segmenter.k_,
        "reason": sel.reason,
        "warnings": s.warnings,
        "notes": s.notes,
        "k_chart": _fig_html(charts.k_selection(sel.table, s.segmenter.k_, sel.knee)) if not sel.table.empty else "",
        "k_table": _table(sel.table) if not sel.table.empty else "",
        "seg_features": seg_feats,
        "preprocessing": [
            {"feature": f, "log1p": lg} for f, lg in zip(seg_feats, s.segmenter.preprocessor_.log_, strict=True)
        ],
        "sizes_chart": _fig_html(charts.sizes_and_value(prof)),
        "heatmap": _fig_html(charts.profile_heatmap(prof, heat_feats)),
        "projection": _fig_html(charts.projection_2d(x, sample["segment"].to_numpy(), names, s.config.segment.seed)),
        "rfa3d": _fig_html(charts.rfa_3d(sample, names)),
        "sample_n": len(sample),
        "n_customers": len(frame),
        "profile_table": _table(prof[profile_cols], floatfmt="{:,.1f}", pct=("share_customers", "share_revenue")),
        "cards": cards,
        "rec": rec,
        "has_products": s.ingest.has_products,
        "feature_registry": _table(s.features.registry()),
    }
    env = Environment(loader=PackageLoader("shopseg", "report/templates"), autoescape=select_autoescape(["html"]))
    text = env.get_template("report.html.j2").render(**ctx)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
