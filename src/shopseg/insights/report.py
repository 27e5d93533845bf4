"""The report's "Shop insights" section (an HTML fragment: tables and plotly charts) and the CLI's tables."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from shopseg.insights import Insights

__all__ = ["funnel_chart", "hours_chart", "insights_html", "months_chart"]


def funnel_chart(funnel: pd.DataFrame, count: str = "events") -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Funnel(
            y=funnel["stage"],
            x=funnel[count],
            textinfo="value+percent initial+percent previous",
            marker={"color": ["#1f77b4", "#ff7f0e", "#2ca02c"][: len(funnel)]},
        )
    )
    fig.update_layout(title=f"Funnel: {count} per stage", height=340, margin={"l": 60, "r": 20, "t": 50, "b": 30})
    return fig


def months_chart(months: pd.DataFrame) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(
        go.Bar(x=months["month"], y=months["transactions"], name="coupon transactions", marker_color="#9ecae1")
    )
    fig.add_trace(go.Bar(x=months["month"], y=months["burned"], name="burned", marker_color="#2ca02c"))
    fig.update_layout(
        title="Coupon transactions per month",
        height=360,
        barmode="overlay",
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
    )
    return fig


def _coupon_html(ins: Insights, sub: Any, para: Any, out: list[str]) -> None:
    """The coupon part of the section (a customer table with coupon activity)."""
    from shopseg.report import _fig_html, _table

    if ins.coupon_funnel is not None:
        sub("Coupons: customers → took a coupon → burned one")
        para(
            "Customers of the customer table, those with at least one coupon transaction, and those who burned "
            "(redeemed) at least one; customer rate = over the previous stage's customers, transaction rate = burned "
            "over all coupon transactions (the burn rate)."
        )
        out.append(_table(ins.coupon_funnel, pct=("customer_rate", "transaction_rate")))
        out.append(_fig_html(funnel_chart(ins.coupon_funnel, "customers")))
    if ins.coupon_hours is not None:
        sub("Coupon transactions by hour of day")
        out.append(_table(ins.coupon_hours))
    if ins.coupon_weekdays is not None:
        sub("Coupon transactions by weekday")
        para(
            "By the transaction's date; burns_on_day counts burns by the day of the burn date."
            if "burns_on_day" in ins.coupon_weekdays
            else "By the transaction's date."
        )
        out.append(_table(ins.coupon_weekdays, pct=("burn_rate",)))
    if ins.coupon_months is not None and not ins.coupon_months.empty:
        sub("Coupon activity by month")
        para("first_time = customers whose first coupon transaction falls in the month.")
        out.append(_fig_html(months_chart(ins.coupon_months)))
    if ins.coupon_top is not None and not ins.coupon_top.empty:
        sub("Top merchants and branches by coupon transactions")
        out.append(_table(ins.coupon_top, pct=("share", "burn_rate")))
    if ins.coupon_customers is not None and not ins.coupon_customers.empty:
        sub("New and returning coupon users")
        out.append(_table(ins.coupon_customers, pct=("share_customers",)))


def hours_chart(hours: pd.DataFrame, count: str = "events") -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Bar(x=hours["hour"], y=hours[count], name=count, marker_color="#9ecae1"), secondary_y=False)
    if "purchases" in hours:
        fig.add_trace(go.Bar(x=hours["hour"], y=hours["purchases"], name="purchases", marker_color="#2ca02c"))
    if "conversion" in hours:
        fig.add_trace(
            go.Scatter(x=hours["hour"], y=hours["conversion"], name="session conversion", mode="lines+markers"),
            secondary_y=True,
        )
        fig.update_yaxes(title_text="conversion", tickformat=".1%", secondary_y=True)
    fig.update_layout(
        title="By hour of day (UTC)",
        height=380,
        barmode="group",
        xaxis={"title": "hour", "dtick": 1},
        margin={"l": 60, "r": 60, "t": 50, "b": 40},
    )
    return fig


def _peak_text(ins: Insights) -> str:
    if ins.peak_hours is None or ins.peak_hours.empty:
        return ""
    parts = []
    for by, g in ins.peak_hours.groupby("by", sort=False):
        hours = ", ".join(f"{int(r.hour):02d}:00 ({int(r.count):,})" for r in g.itertuples())
        parts.append(f"by {html.escape(str(by))}: {hours}")
    return "Peak hours (UTC) " + "; ".join(parts) + "."


def insights_html(ins: Insights) -> str:
    """The section's body: funnel, hours, weekdays, devices, top categories/brands, buyers, follow-up."""
    from shopseg.report import _fig_html, _table

    out: list[str] = []

    def para(text: str, cls: str = "explain") -> None:
        out.append(f'<p class="{cls}">{text}</p>')

    def sub(title: str) -> None:
        out.append(f"<h3>{html.escape(title)}</h3>")

    if ins.funnel is not None:
        sub("Funnel: view → cart → purchase")
        para(
            "Events per stage and the sessions and customers with at least one such event. Event rate = the stage's "
            "events over the previous stage's; session rate = sessions with the stage over sessions with a view."
        )
        out.append(_table(ins.funnel, pct=("event_rate", "session_rate")))
        out.append(_fig_html(funnel_chart(ins.funnel)))
    if ins.hours is not None:
        sub("Hours of the day (UTC)")
        para(_peak_text(ins))
        out.append(_fig_html(hours_chart(ins.hours, "events" if "events" in ins.hours else "orders")))
    if ins.weekdays is not None:
        sub("Weekdays")
        out.append(_table(ins.weekdays, floatfmt="{:,.2f}", pct=("conversion",)))
    if ins.devices is not None:
        sub("Devices")
        mobile = ins.devices.loc[ins.devices["mobile"], "share_events"].sum()
        para(f"Mobile devices account for {mobile:.1%} of the events with a known device.")
        devices = ins.devices.assign(mobile=ins.devices["mobile"].map({True: "yes", False: "no"}))
        out.append(_table(devices, pct=("share_events", "share_sessions")))
    for title, frame in (
        ("Top categories by views", ins.top_categories_by_views),
        ("Top categories by revenue", ins.top_categories_by_revenue),
        ("Top brands by views", ins.top_brands_by_views),
        ("Top brands by revenue", ins.top_brands_by_revenue),
    ):
        if frame is not None and not frame.empty:
            sub(title)
            out.append(_table(frame, floatfmt="{:,.2f}", pct=("share",)))
    if ins.buyers is not None and not ins.buyers.empty:
        sub("New and returning buyers")
        out.append(_table(ins.buyers, floatfmt="{:,.2f}", pct=("share_buyers", "share_revenue")))
    _coupon_html(ins, sub, para, out)
    if ins.attribute_activity is not None and not ins.attribute_activity.empty:
        sub("Activity by customer attribute")
        para(
            "Per attribute of the customer table, its most active values: customers with the value and their "
            "activity in this run (coupon transactions and burns, orders and revenue, events and purchases)."
        )
        out.append(_table(ins.attribute_activity, floatfmt="{:,.2f}", pct=("share_customers", "burn_rate")))
    f = ins.rec_followup
    if f is not None:
        sub("Did buyers later buy what their segment was recommended?")
        para(
            f"Of the {f['buyers_after_cutoff']:,} customers who bought after {f['cutoff'][:10]}, "
            f"{f['bought_segment_product']:,} ({f['share']:.1%}) bought at least one of their segment's top "
            f"{f['list_length']} products (from purchases before that date); the shop-wide top "
            f"{f['list_length']} reached {f['baseline_shop_top_share']:.1%}."
        )
    for n in ins.notes:
        para(html.escape(n), "note")
    return "\n".join(out)
