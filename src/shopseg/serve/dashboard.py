"""The dashboard: a Streamlit app over a run folder (``shopseg dashboard [RUN_DIR]``).

Pages: overview (customers, revenue, segments, data quality and quarantine), segments (profile, rules, top and
banner products), customer lookup (segment, scores, recommendations, purchase history), choosing k, and a new
run from an uploaded file. Every number comes from :class:`~shopseg.serve.rundir.RunData` (read-only) or
:func:`shopseg.run`; charts are the report's plotly charts, in the same segment colours. Works offline.

Streamlit runs this file as a script (``main()`` at the bottom); importing it only defines functions, so the CLI
can call :func:`launch`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PAGES = ("Overview", "Segments", "Customer lookup", "Choosing k", "Insights", "New run")
DEFAULT_RUNS_DIR = Path("out/dashboard")


def launch(
    run_dir: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8501,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    max_upload_mb: int = 200,
    extra_args: Sequence[str] = (),
) -> int:
    """Run ``streamlit run`` on this module, headless and offline (no usage statistics), until interrupted. On
    POSIX this process becomes Streamlit (exec), so stopping it stops the server; elsewhere Streamlit's exit
    code is returned. The run folder is checked first, so a wrong path fails with the library's message
    instead of an empty page."""
    from shopseg.errors import ConfigError
    from shopseg.serve.rundir import RunData

    if run_dir is not None:
        RunData.open(run_dir).close()
    if max_upload_mb < 1:
        raise ConfigError(f"--max-upload-mb must be at least 1 (got {max_upload_mb})")
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(Path(__file__).resolve()),
        "--server.headless=true",
        f"--server.address={host}",
        f"--server.port={int(port)}",
        f"--server.maxUploadSize={int(max_upload_mb)}",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
        "--global.developmentMode=false",
        "--client.toolbarMode=minimal",
        *extra_args,
        "--",
        "--runs-dir",
        str(runs_dir),
        "--max-upload-mb",
        str(int(max_upload_mb)),
    ]
    if run_dir is not None:
        cmd += ["--run-dir", str(Path(run_dir).resolve())]
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    if os.name == "posix":
        # become Streamlit (no child left behind when this process is stopped); returns only if exec fails
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, cmd, env)
    try:  # pragma: no cover - Windows
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:  # pragma: no cover
        return 130


# ------------------------------------------------------------------------------------------------ the app


def _settings() -> dict[str, Any]:
    """Settings from the command line after ``--`` (see :func:`launch`); session state may override them."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--run-dir", default=os.environ.get("SHOPSEG_DASHBOARD_RUN_DIR"))
    p.add_argument("--runs-dir", default=str(DEFAULT_RUNS_DIR))
    p.add_argument("--max-upload-mb", type=int, default=200)
    args, _ = p.parse_known_args(sys.argv[1:])
    return {"run_dir": args.run_dir, "runs_dir": args.runs_dir, "max_upload_mb": args.max_upload_mb}


def main() -> None:
    import streamlit as st

    from shopseg.errors import ShopsegError

    st.set_page_config(page_title="shopseg dashboard", layout="wide")
    defaults = _settings()
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)
    st.sidebar.title("shopseg")
    page = st.sidebar.radio("Page", PAGES, key="page")
    run_dir = st.sidebar.text_input("Run folder", key="run_dir", help="The --out folder of `shopseg run`.")
    if page == "New run":
        _new_run_page()
        return
    if not run_dir:
        st.info("Open a run: type its folder in the sidebar, or start one on the **New run** page.")
        return
    try:
        data = _open(str(run_dir))
    except ShopsegError as exc:
        st.error(str(exc))
        return
    st.sidebar.caption(f"run {data.run_id} · as of {data.as_of:%Y-%m-%d}")
    try:
        {
            "Overview": _overview_page,
            "Segments": _segments_page,
            "Customer lookup": _customer_page,
            "Choosing k": _k_page,
            "Insights": _insights_page,
        }[page](data)
    except ShopsegError as exc:
        st.error(str(exc))


def _open(run_dir: str) -> Any:
    """The run, opened once per folder and manifest version, shared by every session of this server."""
    import streamlit as st

    from shopseg.serve.rundir import RunData, run_id

    @st.cache_resource(show_spinner="Opening the run …", max_entries=8)
    def load(path: str, rid: str) -> RunData:
        return RunData.open(path)

    path = str(Path(run_dir).expanduser().resolve())
    return load(path, run_id(path))


def _chart(fig: Any, key: str) -> None:
    import streamlit as st

    st.plotly_chart(fig, key=key, config={"displaylogo": False})


def _overview_page(data: Any) -> None:
    import plotly.graph_objects as go
    import streamlit as st

    from shopseg.report import charts

    o = data.overview()
    st.title("Overview")
    st.caption(f"{o['run_dir']} · inputs: {', '.join(Path(str(i)).name for i in o['inputs'])}")
    c = st.columns(4)
    c[0].metric("Customers", f"{o['customers']:,}")
    c[1].metric("Revenue (clean)", f"{o['revenue']:,.0f}" if o["revenue"] is not None else "n/a")
    c[2].metric("Segments", f"{o['segments']}")
    c[3].metric("As of", o["as_of"][:10])
    for w in o["warnings"]:
        st.warning(w)
    st.subheader("Segments: size and value")
    st.caption(
        "How many customers each segment holds (light bars) and how much of the revenue they bring (dark bars). "
        "A small segment with a large revenue share is where retention pays most."
    )
    _chart(charts.sizes_and_value(data.profiles), "sizes")
    st.subheader("Data quality")
    rows = {k: o[k] for k in ("input_rows", "clean_rows", "quarantined_rows")}
    q = st.columns(3)
    for col, (key, label) in zip(
        q,
        [("input_rows", "Input rows"), ("clean_rows", "Clean rows"), ("quarantined_rows", "Quarantined rows")],
        strict=True,
    ):
        col.metric(label, "n/a" if rows[key] is None else f"{rows[key]:,}")
    recon = data.reconciliation()
    if None not in rows.values():
        ok = rows["input_rows"] == rows["clean_rows"] + rows["quarantined_rows"]
        st.caption(
            f"Every input row is used or quarantined with one reason: {rows['input_rows']:,} = "
            f"{rows['clean_rows']:,} + {rows['quarantined_rows']:,} ({'reconciled' if ok else 'NOT reconciled'}). "
            "Quarantined rows are in quarantine.parquet."
        )
    rejected = recon[(recon["code"] != "clean") & (recon["rows"] > 0)]
    if not rejected.empty:
        fig = go.Figure(
            go.Bar(x=rejected["rows"], y=rejected["code"], orientation="h", marker={"color": charts.NEUTRAL})
        )
        fig.update_yaxes(autorange="reversed")
        fig.update_layout(title="Quarantined rows by reason", height=140 + 30 * len(rejected), template="plotly_white")
        _chart(fig, "quarantine")
    st.dataframe(recon, hide_index=True)
    if o["notes"]:
        with st.expander("Notes from the run"):
            for n in o["notes"]:
                st.write(n)


def _segment_label(data: Any, seg: int) -> str:
    names = dict(zip(data.profiles["segment"].astype(int), data.profiles["name"], strict=True))
    return f"{seg}: {names.get(seg, '')}"


def _segments_page(data: Any) -> None:
    import pandas as pd
    import plotly.graph_objects as go
    import streamlit as st

    from shopseg.report import charts

    st.title("Segments")
    ids = data.segment_ids
    seg = st.selectbox("Segment", ids, format_func=lambda s: _segment_label(data, s), key="segment")
    d = data.segment(int(seg), 20)
    colour = charts.segment_color(int(seg))
    st.markdown(
        f"<div style='border-left: 8px solid {colour}; padding-left: .8em'><h3>{d['segment']}: {d['name']}</h3>"
        f"{d['size']:,} customers ({(d['share_customers'] or 0):.1%}), "
        f"{(d['share_revenue'] or 0):.1%} of revenue</div>",
        unsafe_allow_html=True,
    )
    st.markdown(f"**Action:** {d['action']}")
    if d.get("earned_by"):
        st.caption(f"Why this name: {d['earned_by']}")
    if d["rules"]:
        st.subheader("Rules")
        _rules(d["rules"])
    st.subheader("Profile")
    st.caption(
        "Each cell is a segment's mean z-score for a feature (on the model's log/standardised scale): red is "
        "above the average customer, blue below."
    )
    feats = [f for f in d["profile"] if not f.startswith("spend_share_")]
    _chart(charts.profile_heatmap(data.profiles, feats), "heatmap")
    prof = pd.DataFrame([{"feature": f, **v} for f, v in d["profile"].items()])
    st.dataframe(prof, hide_index=True)
    top = pd.DataFrame(d["top_products"])
    if not top.empty:
        st.subheader("Top products")
        st.caption("Products bought by the most customers of this segment; lift > 1 means more than in the shop.")
        labels = [str(n or p) for n, p in zip(top["product_name"], top["product_id"], strict=True)]
        fig = go.Figure(go.Bar(x=top["buyer_share"], y=labels, orientation="h", marker={"color": colour}))
        fig.update_yaxes(autorange="reversed")
        fig.update_layout(
            title="Share of the segment's buyers",
            height=160 + 24 * len(top),
            template="plotly_white",
            xaxis={"tickformat": ".0%"},
        )
        _chart(fig, "top-products")
        st.dataframe(top, hide_index=True)
        st.subheader("Banner plan")
        st.caption("Highest-lift products bought by at least 5% of the segment: what to show on its banners.")
        st.dataframe(pd.DataFrame(d["banner_products"]), hide_index=True)
    if d.get("banner_plan"):
        st.caption(
            "Promote internally or sell the slot: value per 1,000 impressions of an internal promotion against the "
            "slot sold as an ad, with the run's rates."
        )
        st.dataframe(pd.DataFrame(d["banner_plan"]), hide_index=True)


def _rules(rules: Any) -> None:
    """A segment's rules: the rule text and its quality, then each rule's coverage (shape of
    segment_rules.json), or the rows as a table."""
    import pandas as pd
    import streamlit as st

    if isinstance(rules, dict) and "rule" in rules:
        st.markdown(f"`{rules['rule']}`")
        quality = {k: rules[k] for k in ("precision", "recall", "fidelity", "coverage") if k in rules}
        if quality:
            st.caption(
                ", ".join(f"{k} {v:.2f}" for k, v in quality.items() if isinstance(v, (int, float)))
                + ": precision = share of the customers the rule selects who are in the segment, recall = share of "
                "the segment it selects, fidelity = F1 of the two."
            )
        parts = [r for r in rules.get("rules", []) if isinstance(r, dict)]
        if parts:
            st.dataframe(pd.DataFrame(parts).drop(columns=["conditions"], errors="ignore"), hide_index=True)
    elif isinstance(rules, list) and all(isinstance(r, dict) for r in rules):
        st.dataframe(pd.DataFrame(rules), hide_index=True)
    else:
        st.json(rules)


def _customer_page(data: Any) -> None:
    import pandas as pd
    import plotly.graph_objects as go
    import streamlit as st

    from shopseg.errors import NotFoundError
    from shopseg.report import charts

    st.title("Customer lookup")
    examples = data.customer_ids(5)
    with st.form("lookup"):
        cid = st.text_input("Customer id", key="customer_id", placeholder=f"e.g. {', '.join(examples[:3])}")
        submitted = st.form_submit_button("Look up")
    if not (submitted or cid):
        return
    if not cid:
        st.warning("Type a customer id.")
        return
    try:
        c = data.customer(cid.strip(), 10)
    except NotFoundError as exc:
        st.error(str(exc))
        return
    colour = charts.segment_color(c["segment"])
    st.markdown(
        f"<div style='border-left: 8px solid {colour}; padding-left: .8em' id='customer-card'><h3>Customer "
        f"{c['customer_id']}</h3>Segment {c['segment']}: <b>{c['segment_name']}</b></div>",
        unsafe_allow_html=True,
    )
    st.markdown(f"**Action:** {c['action']}")
    f = c["features"]
    m = st.columns(4)
    for col, (key, label) in zip(
        m,
        [
            ("recency_days", "Days since last order"),
            ("frequency", "Orders"),
            ("monetary", "Spend"),
            ("avg_order_value", "Average order"),
        ],
        strict=True,
    ):
        v = f.get(key)
        col.metric(label, "n/a" if v is None else f"{v:,.0f}")
    st.subheader("Recommendations")
    recs = pd.DataFrame(c["recommendations"])
    if recs.empty:
        st.caption("No recommendations for this customer.")
    else:
        st.dataframe(recs, hide_index=True)
    hist = data.history(c["customer_id"])
    st.subheader("Purchase history")
    if not hist.empty:
        orders = hist.groupby("order_id", as_index=False).agg(ts=("ts", "min"), amount=("amount", "sum"))
        orders = orders.sort_values("ts")
        fig = go.Figure(go.Bar(x=orders["ts"], y=orders["amount"], marker={"color": colour}, name="order value"))
        fig.update_layout(title="Order value over time", height=320, template="plotly_white")
        _chart(fig, "history")
    st.dataframe(hist, hide_index=True)
    with st.expander("All feature values"):
        st.dataframe(pd.DataFrame({"feature": list(f), "value": list(f.values())}), hide_index=True)


def _k_page(data: Any) -> None:
    import streamlit as st

    from shopseg.report import charts

    st.title("Choosing the number of segments")
    k = data.k_selection()
    st.markdown(f"**{k['reason']}**")
    if k.get("warning"):
        st.warning(k["warning"])
    st.caption(
        "K-Means was fitted for each k. The elbow of the inertia curve, the silhouette, Calinski-Harabasz and "
        "Davies-Bouldin each rank the candidates; the ranks are added and the best total wins."
    )
    table = k["table"]
    if table.empty:
        st.info("This run's model has no k-selection table (k was fixed or there were too few customers).")
        return
    _chart(charts.k_selection(table, int(k["chosen"]), int(k["knee"] or k["chosen"])), "k-selection")
    st.dataframe(table, hide_index=True)
    stab = data.stability()
    if stab and stab.get("table") and stab.get("segments"):
        import pandas as pd

        st.subheader("Stability")
        threshold = float(stab.get("threshold", 0.6))
        st.caption(
            f"The fit was repeated on {stab.get('resamples', '?')} seeded resamples. Left: how much the refits agree "
            "for each k (mean adjusted Rand, 1 = always the same segments). Right: how well each segment is found "
            f"again (Jaccard); below {threshold:.2f} a segment is unstable."
        )
        names = dict(zip(data.profiles["segment"].astype(int), data.profiles["name"].astype(str), strict=True))
        per_seg = pd.DataFrame(stab["segments"])
        _chart(charts.stability(pd.DataFrame(stab["table"]), per_seg, names, threshold), "stability")
        st.dataframe(per_seg, hide_index=True)


def _insights_page(data: Any) -> None:
    import pandas as pd
    import plotly.graph_objects as go
    import streamlit as st

    from shopseg.report import charts

    st.title("Shop insights")
    ins = data.insights()
    if not ins:
        st.info("This run has no insights (insights.json); runs made by this version of shopseg have them.")
        return
    for note in ins.get("notes", []):
        st.caption(str(note))
    for key, x, title in (("hours", "hour", "Orders by hour of day"), ("weekdays", "day", "Orders by weekday")):
        frame = pd.DataFrame(ins.get(key) or [])
        if frame.empty or x not in frame.columns:
            continue
        y = "orders" if "orders" in frame.columns else frame.select_dtypes("number").columns[-1]
        fig = go.Figure(go.Bar(x=frame[x], y=frame[y], marker={"color": charts.NEUTRAL}))
        fig.update_layout(title=title, height=320, template="plotly_white")
        st.subheader(title)
        st.caption(f"When customers buy: {y} per {x}, over the whole period.")
        _chart(fig, f"insights-{key}")
    buyers = pd.DataFrame(ins.get("buyers") or [])
    if not buyers.empty:
        st.subheader("New and returning buyers")
        st.dataframe(buyers, hide_index=True)
    follow = ins.get("rec_followup")
    if isinstance(follow, dict) and follow:
        st.subheader("Did buyers take up their segment's products?")
        st.json(follow)


def _new_run_page() -> None:
    import streamlit as st

    import shopseg
    from shopseg.errors import ShopsegError
    from shopseg.serve.rundir import save_upload

    st.title("New run")
    max_mb = int(st.session_state.get("max_upload_mb", 200))
    st.caption(
        f"Upload an order export (CSV, CSV.gz, Parquet or Excel, at most {max_mb} MB). Columns are mapped "
        "automatically, as with `shopseg run`; errors say what to fix."
    )
    up = st.file_uploader(
        "Order lines", type=["csv", "gz", "txt", "tsv", "parquet", "xlsx"], key="upload", max_upload_size=max_mb
    )
    c = st.columns(3)
    k = c[0].number_input("Segments (0 = choose automatically)", min_value=0, max_value=20, value=0, key="k")
    seed = c[1].number_input("Seed", min_value=0, value=0, key="seed")
    outliers = c[2].selectbox("Outlier customers", ["off", "flag", "remove"], key="outliers")
    name = st.text_input("Run name", key="run_name", placeholder="default: the file name")
    if not st.button("Run", key="start", disabled=up is None):
        return
    assert up is not None
    runs_dir = Path(str(st.session_state.get("runs_dir") or DEFAULT_RUNS_DIR))
    stem = (name or Path(up.name).name.split(".")[0] or "run").strip().replace("/", "_")
    out = _fresh(runs_dir / stem)
    bar = st.progress(0.0, text="uploading")
    try:
        path = save_upload(up.name, up.getvalue(), out / "input", max_bytes=max_mb * 1_000_000)
        cfg = shopseg.load_config(
            None, {"segment.k": int(k) or None, "segment.seed": int(seed), "clean.outliers": outliers}
        )

        def progress(step: str, i: int, n: int) -> None:
            bar.progress(i / n, text=f"{step} ({i}/{n})")

        result = shopseg.run([path], out, cfg, progress=progress)
    except ShopsegError as exc:
        bar.empty()
        st.error(str(exc))
        return
    bar.progress(1.0, text="done")
    rows = result.manifest["rows"]
    st.success(
        f"Run finished: {rows['customers']:,} customers in {len(result.profiles)} segments "
        f"({rows['input_rows']:,} rows = {rows['clean_rows']:,} clean + {rows['quarantined_rows']:,} quarantined). "
        f"Folder: {out}"
    )
    st.session_state["new_run_dir"] = str(out.resolve())
    st.button("Open this run", key="open-new", on_click=_switch_to, args=(str(out.resolve()),))


def _switch_to(run_dir: str) -> None:
    import streamlit as st

    st.session_state["run_dir"] = run_dir
    st.session_state["page"] = "Overview"


def _fresh(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3`` … whichever does not exist yet."""
    if not base.exists():
        return base
    i = 2
    while base.with_name(f"{base.name}-{i}").exists():
        i += 1
    return base.with_name(f"{base.name}-{i}")


if __name__ == "__main__":
    main()
