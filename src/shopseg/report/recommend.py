"""The report's recommendations section: one table per evaluation mode comparing every recommender on the same
split, per-segment metrics, the method behind ``recommendations.parquet`` and why, top products per segment,
bundles and similar products. Built from the run's state and tables; returns HTML for the template."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

if TYPE_CHECKING:
    from shopseg.pipeline import RunState

__all__ = ["recommendations_html"]

_MODE_TITLE = {
    "all": "All items: every product the customer bought in the hold-out (re-purchases count)",
    "new": "New items: only products the customer had never bought (bought products are excluded from the lists)",
}
_K = 10


def _chart(tables: dict[str, pd.DataFrame], fig_html: Callable[[Any], str]) -> str:
    fig = go.Figure()
    for mode, t in tables.items():
        if t.empty:
            continue
        fig.add_trace(go.Bar(x=t["method"], y=t[f"recall@{_K}"], name=f"recall@{_K} ({mode} items)"))
    fig.update_layout(
        barmode="group",
        title=f"Recall@{_K} on the hold-out period, by recommender (higher is better)",
        height=380,
        margin={"l": 40, "r": 20, "t": 50, "b": 80},
        template="plotly_white",
    )
    return fig_html(fig)


def _definitions() -> str:
    return (
        "<details><summary>Metric definitions</summary><ul>"
        "<li><b>precision@k</b>: share of the k listed products that the customer bought;</li>"
        "<li><b>recall@k</b>: share of the products the customer bought that were on the list;</li>"
        "<li><b>ndcg@k</b>: like recall but a hit counts more near the top (1/log2(rank+1)), divided by a perfect "
        "list's score;</li>"
        "<li><b>map@k</b>: mean of precision at each hit's rank, divided by min(bought products, k);</li>"
        "<li><b>hit rate@k</b>: share of customers with at least one bought product on their list;</li>"
        "<li><b>coverage@k</b>: share of the catalogue that appears on any list;</li>"
        "<li><b>novelty@k</b>: mean −log2 of the share of customers who bought each listed product (higher = "
        "less obvious products).</li></ul></details>"
    )


def recommendations_html(
    s: RunState, table: Callable[..., str], fig_html: Callable[[Any], str], names: dict[int, str]
) -> str:
    """HTML of the section (empty string when there is nothing to show)."""
    info = s.rec_info
    if not info or "method" not in info:
        return ""
    parts: list[str] = []
    b = s.backend
    method = html.escape(str(info["method"]))
    parts.append(
        f'<p class="explain"><code>recommendations.parquet</code> holds each customer\'s top {info["k"]} from '
        f"<b>{method}</b> ({html.escape(str(info['reason']))}).</p>"
    )
    tables = {m: pd.DataFrame(rows) for m, rows in info.get("tables", {}).items()}
    if tables:
        users = info.get("users", {})
        share = info.get("repurchase_share")
        parts.append(
            '<p class="explain">Evaluated honestly on a time split: every recommender learned from purchases before '
            f"{html.escape(str(info.get('cutoff', ''))[:10])} (from {info.get('fit_customers', 0):,} customers) and "
            "was judged on what customers with purchases on both sides bought afterwards, among products known "
            f"before the cut-off; top-{_K} lists. "
            + (
                f"{share:.0%} of the products bought in the hold-out had been bought before by the same customer, "
                "which is why re-buy-aware recommenders win on all items."
                if share is not None
                else ""
            )
            + "</p>"
        )
        desc = info.get("descriptions", {})
        cols = [f"{m}@{_K}" for m in ("precision", "recall", "ndcg", "map", "hit_rate", "coverage", "novelty")]
        for mode, t in tables.items():
            if t.empty:
                continue
            parts.append(f"<h3>{html.escape(_MODE_TITLE.get(mode, mode))} — {users.get(mode, 0):,} customers</h3>")
            view = t[["method", *cols]].copy()
            view.insert(1, "what it does", [desc.get(m, "") for m in view["method"]])
            parts.append(table(view, floatfmt="{:,.4f}"))
            other = [c for c in t.columns if "@" in c and not c.endswith(f"@{_K}")]
            if other:
                parts.append(
                    f"<details><summary>k = 5 and 20 ({mode} items)</summary>"
                    + table(t[["method", *other]], floatfmt="{:,.4f}")
                    + "</details>"
                )
        if any(not t.empty for t in tables.values()):
            parts.append(_chart(tables, fig_html))
        parts.append(_definitions())
        per_seg = pd.DataFrame(info.get("per_segment", []))
        if not per_seg.empty:
            shown = [info["method"], "segment_top"]
            ps = per_seg[per_seg["method"].isin(shown)].copy()
            ps.insert(3, "segment name", [names.get(int(g), f"Segment {g}") for g in ps["segment"]])
            parts.append(
                "<h3>Where recommendations work: per-segment metrics</h3>"
                f'<p class="explain">The chosen recommender and the classic per-segment top products, top-{_K}, for '
                "each segment (segments as of the cut-off).</p>"
            )
            parts.append(table(ps.sort_values(["mode", "segment", "method"]), floatfmt="{:,.4f}"))
    if s.segment_products is not None and not s.segment_products.empty:
        top = s.segment_products[s.segment_products["rank"] <= 5].copy()
        top.insert(1, "segment name", [names.get(int(g), f"Segment {g}") for g in top["segment"]])
        parts.append(
            "<h3>Top products per segment (banner candidates)</h3>"
            '<p class="explain">By number of buyers in the segment; lift = the segment\'s buyer share divided by '
            "everyone's.</p>"
        )
        parts.append(table(top, pct=("buyer_share",)))
    if b.has_table("segment_products_by_lift"):
        lift = b.df("SELECT * FROM segment_products_by_lift WHERE rank <= 5 ORDER BY segment, rank")
        if not lift.empty:
            lift.insert(1, "segment name", [names.get(int(g), f"Segment {g}") for g in lift["segment"]])
            parts.append(
                "<details><summary>Top products per segment by lift (products with 5+ buyers in the segment)"
                "</summary>" + table(lift, pct=("buyer_share",)) + "</details>"
            )
    if b.has_table("bundles"):
        bundles = b.df("SELECT * FROM bundles LIMIT 10")
        if not bundles.empty:
            parts.append(
                "<h3>Bundles: products bought in the same order</h3>"
                '<p class="explain">Pairs by lift (how much more often they share an order than by chance); '
                "<code>bundles.parquet</code> has the full list.</p>"
            )
            parts.append(table(bundles, floatfmt="{:,.3f}"))
    if b.has_table("similar_items"):
        sim = b.df(
            "SELECT s.* FROM similar_items s JOIN (SELECT product_id, count(*) AS n FROM recommendations GROUP BY 1 "
            "ORDER BY n DESC, product_id LIMIT 3) top USING (product_id) WHERE s.rank <= 5 ORDER BY top.n DESC, "
            "s.product_id, s.rank"
        )
        if not sim.empty:
            parts.append(
                "<h3>Similar products (cross-sell)</h3>"
                '<p class="explain">For the three most recommended products; <code>similar_items.parquet</code> has '
                f"ten for every product (from {html.escape(str(info.get('similar_items_from', '')))}).</p>"
            )
            parts.append(table(sim))
    return "\n".join(parts)
