"""Plotly figures for the report (and later the dashboard). Segment colours are fixed by segment id."""

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


def segment_color(segment: int) -> str:
    return PALETTE[int(segment) % len(PALETTE)]


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, height=height, template="plotly_white", margin={"l": 60, "r": 20, "t": 60, "b": 50})
    return fig


def k_selection(table: pd.DataFrame, chosen: int, knee: int) -> go.Figure:
    fig = make_subplots(
        rows=2,
        cols=2,
        subplot_titles=(
            f"Elbow: inertia (knee at k={knee})",
            "Silhouette (higher is better)",
            "Calinski-Harabasz (higher is better)",
            "Davies-Bouldin (lower is better)",
        ),
    )
    spec = [("inertia", 1, 1), ("silhouette", 1, 2), ("calinski_harabasz", 2, 1), ("davies_bouldin", 2, 2)]
    for col, r, c in spec:
        fig.add_trace(
            go.Scatter(
                x=table["k"],
                y=table[col],
                mode="lines+markers",
                name=col,
                showlegend=False,
                line={"color": "#1f77b4"},
            ),
            row=r,
            col=c,
        )
        sel = table[table["k"] == chosen]
        fig.add_trace(
            go.Scatter(
                x=sel["k"],
                y=sel[col],
                mode="markers",
                showlegend=False,
                marker={"size": 14, "color": "#d62728", "symbol": "star"},
                name=f"k={chosen}",
            ),
            row=r,
            col=c,
        )
    fig.update_xaxes(title_text="k", dtick=1)
    return _layout(fig, f"Choosing k (chosen: k={chosen}, red star)", 560)


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
    fig = go.Figure(go.Bar(x=frame["revenue"], y=frame["country"], orientation="h", marker={"color": "#1f77b4"}))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Top countries by clean revenue", 120 + 28 * len(frame))


def recommendation_eval(table: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for metric in ("precision", "recall", "hit_rate"):
        fig.add_trace(go.Bar(x=table["method"], y=table[metric], name=metric))
    fig.update_layout(barmode="group")
    return _layout(fig, "Recommendation quality on the hold-out period (higher is better)")
