"""report.html: self-contained (plotly.js inline once), offline, built from the run's tables.

Context building happens here; the Jinja template holds no logic beyond loops and formatting.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from shopseg.backends.duckdb import quote
from shopseg.profile import segment_top_categories
from shopseg.report import charts

if TYPE_CHECKING:
    from shopseg.backends import Backend
    from shopseg.pipeline import RunState
    from shopseg.profile.migrate import Migration

__all__ = ["build_migration_report", "build_report"]

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


#: column types that cannot hold a blank value (DuckDB's and Spark's spellings)
_TYPED = re.compile(
    r"(?i)^U?(BIG|SMALL|TINY|HUGE)?(INT|INTEGER|LONG|SHORT|BYTE|DOUBLE|FLOAT|REAL|DECIMAL|NUMERIC|TIMESTAMP|DATE|"
    r"BOOLEAN|BOOL|TIME)(_[A-Z]+)?(?![A-Z0-9_\[])"
)


def _missing_counts(b: Backend, table: str, skip: tuple[str, ...]) -> tuple[list[str], str]:
    """The columns of a raw table and SQL expressions counting each one's missing values: NULL, and for text
    columns also empty or blank. Typed columns (from Parquet or Excel) are not cast to text: a cast of every
    value costs seconds on millions of rows and a number or timestamp cannot be blank."""
    cols = [(c, t) for c, t in b.columns(table) if c not in skip]
    parts = ", ".join(
        f"count(*) - count({quote(c)})"
        if _TYPED.match(t)
        else f"count(*) - count(NULLIF(trim(CAST({quote(c)} AS VARCHAR)), ''))"
        for c, t in cols
    )
    return [c for c, _ in cols], parts


def _data_summary(s: RunState) -> dict[str, Any]:
    b = s.backend
    raw_cols, parts = _missing_counts(b, "raw_transactions", ("_row_id", "_source"))
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
    # one pass over the clean lines to (country, customer) groups, from which both the totals and the top
    # countries are counted (a distinct count per group over every line costs several times as much at 50M)
    b.execute(
        "CREATE OR REPLACE TEMP TABLE _country_customers AS SELECT country, customer_id, min(ts) AS lo, "
        "max(ts) AS hi, sum(quantity * unit_price) AS revenue FROM transactions GROUP BY ALL"
    )
    clean_rng = b.con.execute(
        "SELECT min(lo), max(hi), (SELECT count(*) FROM (SELECT DISTINCT customer_id FROM _country_customers "
        "WHERE customer_id IS NOT NULL)), (SELECT count(*) FROM (SELECT order_id FROM transactions "
        "WHERE order_id IS NOT NULL GROUP BY 1)), sum(revenue) FROM _country_customers"
    ).fetchall()[0]
    assert rng is not None and clean_rng is not None
    countries = b.df(
        "SELECT country, sum(revenue) AS revenue, count(customer_id) AS customers FROM _country_customers "
        "WHERE country IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10"
    )
    b.execute("DROP TABLE _country_customers")
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


def _events_summary(s: RunState) -> dict[str, Any]:
    """The data section's figures for a run whose customers come from events (no order lines)."""
    from shopseg.insights import events_summary

    e = events_summary(s.backend)
    b = s.backend
    raw_cols, parts = _missing_counts(b, "raw_events", ("_row_id", "_source"))
    row = b.rows(f"SELECT {parts} FROM raw_events")[0]
    mapping = s.events_ingest.mapping.source if s.events_ingest is not None else {}
    missing = pd.DataFrame(
        {
            "column": raw_cols,
            "mapped to": [next((k for k, v in mapping.items() if v == c), "") for c in raw_cols],
            "missing": [int(x) for x in row],
        }
    )
    missing["share"] = missing["missing"] / max(e["rows"], 1)
    orders = int(b.scalar("SELECT count(DISTINCT order_id) FROM transactions")) if b.has_table("transactions") else 0
    return {
        **e,
        "orders": orders or e["purchases"],
        "missing_table": _table(missing, pct=("share",)),
        "countries_chart": "",
    }


def _pct(v: float) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.0%}"


def _persona(s: RunState, r: Any, categories: pd.DataFrame | None) -> dict[str, Any]:
    """The persona part of a segment card: naming rule, dimensions, defining rules with fidelity, categories."""
    assert s.profiles is not None
    seg = int(r.segment)
    dims = [
        f"{c[4:].replace('_', ' ')} {getattr(r, c):+.2f}"
        for c in s.profiles.columns
        if c.startswith("dim_") and np.isfinite(getattr(r, c))
    ]
    out: dict[str, Any] = {"name_rule": getattr(r, "name_rule", ""), "dimensions": ", ".join(dims)}
    out["rules"], out["rule_fidelity"] = [], None
    if s.rules is not None:
        sr = next((x for x in s.rules.segments if x.segment == seg), None)
        if sr is not None:
            out["rules"] = [
                {"text": x.text(), "matched": f"{x.matched:,}", "precision": _pct(x.precision)} for x in sr.rules
            ]
            out["rule_fidelity"] = (
                f"precision {_pct(sr.precision)}, recall {_pct(sr.recall)}, fidelity {_pct(sr.fidelity)}"
            )
    out["top_categories"] = []
    if categories is not None and not categories.empty:
        out["top_categories"] = [
            f"{c.category} ({c.spend_share:.0%} of spend, lift {c.lift:.1f})"
            for c in categories[categories["segment"] == seg].itertuples()
        ]
    return out


def _segmentation_context(s: RunState, names: dict[int, str]) -> dict[str, Any]:
    """The algorithm, how it was fitted, preprocessing (with dropped features and why), stability per k and per
    segment (unstable ones flagged) and, for ``auto``, the comparison of the candidates."""
    seg = s.segmenter
    assert seg is not None
    fit = seg.fit_info_
    out: dict[str, Any] = {
        "label": type(seg).label if seg.algorithm_ == seg.algorithm else seg.algorithm_,
        "algorithm": seg.algorithm_,
        "chooses_k": seg.selection_.table["k"].nunique() > 1 if "k" in seg.selection_.table else False,
        "method": fit.get("method", ""),
        "ward": fit.get("ward"),
        "noise_share": seg.noise_share_ if seg.algorithm_ == "hdbscan" else None,
        "auto_reason": fit.get("auto"),
        "auto_table": "",
        "preprocessing_table": _table(seg.preprocessor_.describe(), floatfmt="{:,.2f}"),
        "pca": seg.preprocessor_.pca_explained_,
        "stability": None,
    }
    comparison = getattr(seg, "comparison_", None)
    if isinstance(comparison, pd.DataFrame):
        out["auto_table"] = _table(comparison, pct=("noise_share",))
    st = seg.stability_
    if st is not None:
        per_seg = st.segments.copy()
        per_seg.insert(1, "name", [names.get(int(x), "") for x in per_seg["segment"]])
        per_seg["stable"] = ["stable" if ok else "UNSTABLE" for ok in per_seg["stable"]]
        out["stability"] = {
            "summary": st.summary(),
            "per_k": _table(st.table.rename(columns={"ari_mean": "mean adjusted Rand", "ari_sd": "sd"})),
            "per_segment": _table(per_seg.rename(columns={"jaccard": "Jaccard"})),
            "unstable": [f"{x}: {names.get(x, '')}" for x in st.unstable()],
            "chart": _fig_html(charts.stability(st.table, st.segments, names, st.threshold)),
            "threshold": st.threshold,
            "resamples": st.resamples,
            "sample": st.sample,
            "method": st.method,
        }
    return out


def build_report(s: RunState, path: Path) -> None:
    """Render the run into one self-contained HTML file (written atomically)."""
    import plotly.offline

    assert s.profiles is not None and s.segmenter is not None and s.features is not None
    assert s.labels is not None
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
    has_category = any(i is not None and i.mapping.has("category") for i in (s.ingest, s.events_ingest))
    categories = segment_top_categories(s.backend) if has_category and s.backend.has_table("transactions") else None
    for r in prof.itertuples():
        persona = _persona(s, r, categories)
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
                **persona,
            }
        )
    profile_cols = ["segment", "name", "size", "share_customers", "share_revenue"] + [
        f"mean_{f}"
        for f in ("recency_days", "frequency", "monetary", "avg_order_value", "tenure_days")
        if f"mean_{f}" in prof.columns
    ]
    profile_cols += [  # behavioural features of runs with events
        f"mean_{f}"
        for f in ("sessions", "views", "purchases", "spend", "view_to_purchase_rate")
        if f"mean_{f}" in prof.columns
    ]
    cleans: list[tuple[str, Any]] = [
        (name, c) for name, c in (("orders", s.clean), ("events", s.events_clean)) if c is not None
    ]
    if s.customers is not None:  # the customer table and its coupon activity reconcile on their own
        cleans.append(("customers", s.customers.clean.customers))
        if s.customers.clean.activity is not None:
            cleans.append(("coupons", s.customers.clean.activity))
    recon = pd.concat(
        [c.reconciliation[["code", "description", "rows", "share"]].assign(source=name) for name, c in cleans],
        ignore_index=True,
    )
    if len(cleans) == 1:
        recon = recon.drop(columns="source")
    else:
        recon = recon[["source", "code", "description", "rows", "share"]]
    mapping = dict(s.ingest.mapping.source) if s.ingest is not None else {}
    if s.events_ingest is not None:
        prefix = "events." if s.ingest is not None else ""
        mapping.update({f"{prefix}{k}": v for k, v in s.events_ingest.mapping.source.items()})
    insights = ""
    if s.insights is not None:
        from shopseg.insights.report import insights_html

        insights = insights_html(s.insights)
    from shopseg.report.recommend import recommendations_html

    rec = recommendations_html(s, _table, _fig_html, names)
    ctx = {
        "title": f"shopseg report: {', '.join(Path(i).name for i in [*s.inputs, *s.event_inputs])[:120]}",
        "plotly_js": plotly.offline.get_plotlyjs(),
        "inputs": [*s.inputs, *(f"{i} (events)" for i in s.event_inputs)],
        "as_of": s.features.as_of,
        "summary": _data_summary(s)
        if s.ingest is not None
        else (_events_summary(s) if s.events_ingest is not None else _customers_summary(s)),
        "mapping": mapping,
        "recon_table": _table(recon, pct=("share",)),
        "input_rows": sum(c.input_rows for _, c in cleans),
        "clean_rows": sum(c.clean_rows for _, c in cleans),
        "quarantined_rows": sum(c.quarantined_rows for _, c in cleans),
        "insights_html": insights,
        "k": s.segmenter.k_,
        "reason": sel.reason,
        "warnings": s.warnings,
        "notes": s.notes,
        "k_chart": _fig_html(charts.k_selection(sel.table, s.segmenter.k_, sel.knee)) if not sel.table.empty else "",
        "k_table": _table(sel.table) if not sel.table.empty else "",
        "segmentation": _segmentation_context(s, names),
        "seg_features": seg_feats,
        "preprocessing": [
            {"feature": f, "log1p": lg} for f, lg in zip(seg_feats, s.segmenter.preprocessor_.log_, strict=True)
        ],
        "sizes_chart": _fig_html(charts.sizes_and_value(prof)),
        "heatmap": _fig_html(charts.profile_heatmap(prof, heat_feats)),
        "projection": _fig_html(charts.projection_2d(x, sample["segment"].to_numpy(), names, s.config.segment.seed)),
        "rfa3d": _fig_html(charts.rfa_3d(sample[sample["frequency"] > 0], names))  # customers with orders
        if {"recency_days", "frequency", "avg_order_value"} <= set(sample.columns)
        else "",
        "sample_n": len(sample),
        "n_customers": len(frame),
        "profile_table": _table(prof[profile_cols], floatfmt="{:,.1f}", pct=("share_customers", "share_revenue")),
        "cards": cards,
        "rec": rec,
        "has_products": s.backend.has_table("recommendations") or (s.ingest is not None and s.ingest.has_products),
        "feature_registry": _table(s.features.registry()),
        **_customer_context(s),
    }
    env = Environment(loader=PackageLoader("shopseg", "report/templates"), autoescape=select_autoescape(["html"]))
    text = env.get_template("report.html.j2").render(**ctx)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def build_migration_report(m: Migration, path: Path, *, title: str = "") -> None:
    """``migration.html``: summary, Sankey diagram and the counts and shares matrices (self-contained)."""
    import plotly.offline

    when = ""
    if m.old_as_of is not None and m.new_as_of is not None:
        when = f"OLD as of {m.old_as_of:%Y-%m-%d}, NEW as of {m.new_as_of:%Y-%m-%d}."
    ctx = {
        "title": f"shopseg migration: {title}"[:140],
        "subtitle": title,
        "plotly_js": plotly.offline.get_plotlyjs(),
        "summary": m.summary(),
        "as_of_text": when,
        "sankey": _fig_html(charts.migration_sankey(m.flows, f"Segment migration {title}".strip())),
        "counts_table": _table(m.counts.reset_index()),
        "shares_table": _table(m.shares.reset_index(), pct=tuple(m.shares.columns)),
    }
    env = Environment(loader=PackageLoader("shopseg", "report/templates"), autoescape=select_autoescape(["html"]))
    text = env.get_template("migration.html.j2").render(**ctx)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# ------------------------------------------------------------------------------------------ customer table, banners


def _customers_summary(s: RunState) -> dict[str, Any]:
    """The data section's figures for a run whose only source is a customer table (e.g. the coupon workbook)."""
    assert s.customers is not None
    b = s.backend
    c = s.customers.clean
    raw_cols, parts = _missing_counts(b, "raw_customers", ("_source",))
    row = b.con.execute(f"SELECT {parts} FROM raw_customers").fetchall()[0]
    attr = {a.source: a.name for a in s.customers.ingest.attributes}
    missing = pd.DataFrame(
        {
            "column": raw_cols,
            "mapped to": [
                "customer_id" if col == s.customers.ingest.id_column else attr.get(col, "") for col in raw_cols
            ],
            "missing": [int(x) for x in row],
        }
    )
    missing["share"] = missing["missing"] / max(c.customers.input_rows, 1)
    dates: tuple[Any, ...] = (None, None)
    if c.activity is not None:
        dates = tuple(b.con.execute("SELECT min(ts), max(ts) FROM coupons").fetchall()[0])
    return {
        "rows": c.customers.input_rows,
        "customers": c.customers.clean_rows,
        "orders": c.activity.clean_rows if c.activity is not None else 0,
        "orders_label": "coupon transactions",
        "revenue": None,
        "date_min": dates[0],
        "date_max": dates[1],
        "clean_min": dates[0],
        "clean_max": dates[1],
        "missing_table": _table(missing, pct=("share",)),
        "countries_chart": "",
    }


def _customer_context(s: RunState) -> dict[str, Any]:
    """Report sections of issue 3's customer part: the customer table (attributes, lookups, match), the
    categorical composition of the segments, the banner strategy and the impact scenarios."""
    from shopseg.profile.composition import composition_summary, composition_wide

    out: dict[str, Any] = {"customer_table": None, "banners": None, "impact": None, "composition": {}}
    run = s.customers
    if run is not None:
        ing = run.ingest
        attrs = pd.DataFrame(
            [(a.name, a.kind, a.source, a.lookup or "") for a in ing.attributes],
            columns=["attribute", "kind", "source column", "names from"],
        )
        comp = run.composition
        if comp is not None and not comp.empty:
            out["composition"] = composition_summary(comp)
        dom = pd.DataFrame(
            [(d.attribute, d.cramers_v, d.purity, "yes" if d.decides else "no") for d in run.dominance],
            columns=["attribute", "Cramér's V", "purity", "decides the segments"],
        )
        out["customer_table"] = {
            "origin": ing.origin,
            "attributes": _table(attrs),
            "skipped": ing.skipped,
            "activity": ing.activity.sheet if ing.activity is not None else None,
            "match": run.match,
            "segment_on": [*run.segment_numeric, *run.segment_categorical],
            "weight": s.config.customers.categorical_weight,
            "composition": _table(composition_wide(comp)) if comp is not None and not comp.empty else "",
            "dominance": _table(dom) if not dom.empty else "",
            "features": _table(run.features.registry_frame()),
        }
    if s.banners is not None and not s.banners.empty:
        b = s.banners
        table = pd.DataFrame(
            {
                "segment": [f"{r.segment} {r.segment_name}" for r in b.itertuples()],
                "slot": b["slot"],
                "CTR": b["ctr"],
                "conversion": b["conversion"],
                "AOV": b["aov"],
                "internal / 1,000": b["internal_per_1000"],
                "external / 1,000": b["external_per_1000"],
                "ratio (interval)": [
                    f"{r.ratio:.2f} ({r.ratio_low:.2f}-{r.ratio_high:.2f})" if r.ratio == r.ratio else ""
                    for r in b.itertuples()
                ],
                "break-even CPC": b["break_even_cpc"],
                "break-even AOV": b["break_even_aov"],
                "advice": b["recommendation"],
            }
        )
        what = b.drop_duplicates("segment")
        what = pd.DataFrame(
            {
                "segment": [f"{r.segment} {r.segment_name}" for r in what.itertuples()],
                "products to feature": what["featured_products"],
                "best hours": what["best_hours"],
            }
        )
        cfg = s.config.banners
        out["banners"] = {
            "table": _table(table, floatfmt="{:,.2f}", pct=("CTR", "conversion")),
            "what": _table(what),
            "sources": sorted(set(b["rates_from"])),
            "margin": cfg.margin,
            "cpc": cfg.cpc,
            "cpm": cfg.cpm,
            "confidence": cfg.confidence,
            "bootstrap": cfg.bootstrap,
            "keep_above": cfg.keep_above,
            "sell_below": cfg.sell_below,
        }
    if s.impact is not None and not s.impact.empty:
        imp = s.impact
        rows = []
        for seg, g in imp.groupby("segment", sort=True):
            r = g.iloc[0]
            row = {
                "segment": f"{seg} {r['segment_name']}",
                "action": r["action"],
                "customers": int(r["customers"]),
                "orders / customer / year": float(r["orders_per_customer_year"]),
                "AOV": float(r["aov"]),
                "revenue / year": float(r["annual_revenue"]),
            }
            for x in g.itertuples():
                share = f" ({x.change_share:+.0%})" if x.change_share == x.change_share else ""
                row[str(x.assumption)] = f"{x.revenue_change:+,.0f}{share}"
            rows.append(row)
        out["impact"] = {
            "table": _table(pd.DataFrame(rows), floatfmt="{:,.2f}"),
            "config": s.config.impact,
            "years": float(s.backend.scalar("SELECT any_value(years) FROM segment_figures"))
            if s.backend.has_table("segment_figures")
            else None,
        }
    return out
