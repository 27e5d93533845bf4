"""Plotly figures for the report and the dashboard.

Colours: one palette keyed by segment id (:func:`segment_color`) is used by every chart, the segment cards and
the dashboard, so a segment looks the same everywhere; series that are not segments use :data:`NEUTRAL` and
:data:`ACCENT`, never a segment's colour, and unassigned customers (segment -1) are grey.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
)


#: series that are not segments (index curves, countries, totals)
NEUTRAL = "#5b6b7f"
#: a highlighted point that is not a segment (the chosen k)
ACCENT = "#111111"
#: customers in no segment (HDBSCAN noise, segment -1)
UNASSIGNED = "#9e9e9e"


def segment_color(segment: int) -> str:
    """The colour of a segment in every chart: fixed by its id (grey for -1, unassigned)."""
    s = int(segment)
    return UNASSIGNED if s < 0 else PALETTE[s % len(PALETTE)]


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, height=height, template="plotly_white", margin={"l": 60, "r": 20, "t": 60, "b": 50})
    return fig


def k_selection(table: pd.DataFrame, chosen: int, knee: int) -> go.Figure:
    """One panel per index in ``table`` (elbow, silhouette, Calinski-Harabasz, Davies-Bouldin; gap statistic and
    BIC when present), the chosen k starred."""
    panels = [
        ("inertia", f"Elbow: inertia (knee at k={knee})"),
        ("silhouette", "Silhouette (higher is better)"),
        ("calinski_harabasz", "Calinski-Harabasz (higher is better)"),
        ("davies_bouldin", "Davies-Bouldin (lower is better)"),
        ("gap", "Gap statistic (± s.e.; smallest k within one s.e. of the next)"),
        ("bic", "BIC (lower is better)"),
    ]
    panels = [(c, t) for c, t in panels if c in table.columns and table[c].notna().any()]
    cols = 2 if len(panels) <= 4 else 3
    rows = (len(panels) + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[t for _, t in panels])
    sel = table[table["k"] == chosen]
    for i, (col, _) in enumerate(panels):
        r, c = i // cols + 1, i % cols + 1
        err = {"type": "data", "array": table["gap_se"], "visible": True} if col == "gap" else None
        fig.add_trace(
            go.Scatter(
                x=table["k"],
                y=table[col],
                error_y=err,
                mode="lines+markers",
                name=col,
                showlegend=False,
                line={"color": NEUTRAL},
            ),
            row=r,
            col=c,
        )
        fig.add_trace(
            go.Scatter(
                x=sel["k"],
                y=sel[col],
                mode="markers",
                showlegend=False,
                marker={"size": 14, "color": ACCENT, "symbol": "star"},
                name=f"k={chosen}",
            ),
            row=r,
            col=c,
        )
    fig.update_xaxes(title_text="k", dtick=1)
    return _layout(fig, f"Choosing k (chosen: k={chosen}, black star)", 280 * rows)


def stability(per_k: pd.DataFrame, per_segment: pd.DataFrame, names: dict[int, str], threshold: float) -> go.Figure:
    """Bootstrap stability: mean adjusted Rand between refits per k (left) and each segment's Jaccard (right),
    unstable segments (below ``threshold``) hatched and pale, in their own colour."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("Agreement between bootstrap refits (mean adjusted Rand)", "Segment stability (Jaccard)"),
    )
    fig.add_trace(
        go.Bar(
            x=per_k["k"],
            y=per_k["ari_mean"],
            error_y={"type": "data", "array": per_k["ari_sd"], "visible": True},
            marker={"color": NEUTRAL},
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    labels = [f"{int(sg)}: {names.get(int(sg), '')}" for sg in per_segment["segment"]]
    stable = [bool(ok) for ok in per_segment["stable"]]
    marker = {
        "color": [segment_color(int(sg)) for sg in per_segment["segment"]],
        "opacity": [1.0 if ok else 0.45 for ok in stable],
        "pattern": {"shape": ["" if ok else "/" for ok in stable]},
    }
    fig.add_trace(go.Bar(x=labels, y=per_segment["jaccard"], marker=marker, showlegend=False), row=1, col=2)
    fig.add_hline(y=threshold, line={"dash": "dash", "color": ACCENT}, row=1, col=2)  # type: ignore[arg-type]
    fig.update_yaxes(range=[0, 1.05])
    fig.update_xaxes(title_text="k", dtick=1, row=1, col=1)
    return _layout(
        fig, f"Stability under bootstrap (dashed: the {threshold:.2f} threshold below which a segment is unstable)"
    )


def sizes_and_value(profiles: pd.DataFrame) -> go.Figure:
    labels = [f"{r.segment}: {r.name}" for r in profiles.itertuples()]
    colors = [segment_color(s) for s in profiles["segment"]]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=labels,
            y=profiles["share_customers"],
            name="share of customers",
            marker={"color": colors, "opacity": 0.55},
            text=profiles["size"],
            textposition="outside",
        )
    )
    fig.add_trace(go.Bar(x=labels, y=profiles["share_revenue"], name="share of revenue", marker={"color": colors}))
    fig.update_layout(barmode="group", yaxis={"tickformat": ".0%"})
    return _layout(fig, "Segment size (light) and share of revenue (dark)")


def profile_heatmap(profiles: pd.DataFrame, features: list[str]) -> go.Figure:
    zcols = [f"z_{f}" for f in features if f"z_{f}" in profiles.columns]
    z = profiles[zcols].to_numpy()
    labels = [f"{r.segment}: {r.name}" for r in profiles.itertuples()]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[c[2:] for c in zcols],
            y=labels,
            colorscale="RdBu",
            reversescale=True,
            zmid=0,
            text=np.round(z, 2),
            texttemplate="%{text}",
            colorbar={"title": "z"},
        )
    )
    return _layout(fig, "Segment profiles: mean z-score of each feature against all customers", 180 + 45 * len(labels))


def projection_2d(x: np.ndarray, labels: np.ndarray, names: dict[int, str], seed: int) -> go.Figure:
    from sklearn.decomposition import PCA

    n = min(2, x.shape[1])
    pts = PCA(n_components=n, random_state=seed).fit_transform(x) if n >= 2 else np.c_[x[:, 0], np.zeros(len(x))]
    fig = go.Figure()
    for seg in sorted(set(labels.tolist())):
        m = labels == seg
        fig.add_trace(
            go.Scattergl(
                x=pts[m, 0],
                y=pts[m, 1],
                mode="markers",
                name=f"{seg}: {names[seg]}",
                marker={"size": 4, "color": segment_color(seg), "opacity": 0.6},
            )
        )
    fig.update_xaxes(title_text="principal component 1")
    fig.update_yaxes(title_text="principal component 2")
    return _layout(fig, "Customers projected to 2-D (PCA of the segmentation features)", 500)


def rfa_3d(frame: pd.DataFrame, names: dict[int, str]) -> go.Figure:
    fig = go.Figure()
    for seg in sorted(frame["segment"].unique().tolist()):
        d = frame[frame["segment"] == seg]
        fig.add_trace(
            go.Scatter3d(
                x=d["recency_days"],
                y=np.log10(d["frequency"]),
                z=np.log10(d["avg_order_value"].clip(lower=0.01)),
                mode="markers",
                name=f"{seg}: {names[seg]}",
                text=d["customer_id"],
                marker={"size": 2.5, "color": segment_color(seg), "opacity": 0.7},
            )
        )
    fig.update_layout(
        scene={
            "xaxis_title": "recency (days)",
            "yaxis_title": "log10 orders",
            "zaxis_title": "log10 avg order value",
        }
    )
    return _layout(fig, "Recency, frequency and average order value (drag to rotate)", 620)


def top_countries(frame: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Bar(x=frame["revenue"], y=frame["country"], orientation="h", marker={"color": NEUTRAL}))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Top countries by clean revenue", 120 + 28 * len(frame))


def recommendation_eval(table: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for metric in ("precision", "recall", "hit_rate"):
        fig.add_trace(go.Bar(x=table["method"], y=table[metric], name=metric))
    fig.update_layout(barmode="group")
    return _layout(fig, "Recommendation quality on the hold-out period (higher is better)")


def migration_sankey(flows: pd.DataFrame, title: str) -> go.Figure:
    """Sankey of segment moves: OLD segments (and 'new') on the left, NEW segments (and 'lost') on the right.

    ``flows``: from_segment, from_name, to_segment, to_name, customers (``shopseg.profile.migrate.Migration.flows``).
    """
    grey = "#9e9e9e"
    left = flows.drop_duplicates(["from_segment", "from_name"])[["from_segment", "from_name"]].to_numpy().tolist()
    right = flows.drop_duplicates(["to_segment", "to_name"])[["to_segment", "to_name"]].to_numpy().tolist()
    labels: list[str] = []
    colors: list[str] = []
    index: dict[tuple[str, object], int] = {}
    for side, nodes in (("from", left), ("to", right)):
        for seg, name in nodes:
            index[(side, seg if pd.notna(seg) else None)] = len(labels)
            labels.append(f"{int(seg)}: {name}" if pd.notna(seg) else str(name))
            colors.append(segment_color(int(seg)) if pd.notna(seg) else grey)
    used = flows[flows["customers"] > 0]
    src = [index[("from", s if pd.notna(s) else None)] for s in used["from_segment"]]
    dst = [index[("to", s if pd.notna(s) else None)] for s in used["to_segment"]]
    link_colors = [
        f"rgba({int(c[1:3], 16)},{int(c[3:5], 16)},{int(c[5:7], 16)},0.35)" for c in (colors[i] for i in src)
    ]
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={"label": labels, "color": colors, "pad": 18, "thickness": 18},
            link={
                "source": src,
                "target": dst,
                "value": used["customers"].tolist(),
                "color": link_colors,
                "customdata": [f"{v:.1%}" for v in used["share_of_from"]],
                "hovertemplate": "%{source.label} → %{target.label}: %{value:,} customers "
                "(%{customdata} of the left segment)<extra></extra>",
            },
        )
    )
    return _layout(fig, title, 160 + 40 * max(len(left), len(right)))
