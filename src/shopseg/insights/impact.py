"""Impact scenarios: what a segment's action is worth if it moves the segment's own figures.

For each segment (figures from the run's clean orders, or purchase events in a run without order lines):

* ``customers`` N, ``orders`` and ``revenue`` in the observed window of Y years (first order of the shop to
  the as-of date, at least one day);
* orders per customer per year ``f = orders / N / Y``; average order value ``a = revenue / orders``;
* baseline annual revenue ``R = N · f · a`` (= revenue / Y).

Scenarios (``[impact]``, defaults in brackets), each a change in annual revenue ``ΔR``:

* **AOV +u** [10 %]: ``ΔR = R · u``;
* **retention +r** [5 percentage points]: r · N more customers keep buying for a year at the segment's rate:
  ``ΔR = r · N · f · a = R · r``;
* **+e orders a year** [1]: every customer orders e more times at the segment's AOV: ``ΔR = N · e · a``;
* **all three together**: ``ΔR = N (1 + r) · (f + e) · a (1 + u) − R``.

A window shorter than a year is extrapolated to a year (the table says how long it was).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from shopseg.backends.duckdb import DuckDBBackend
from shopseg.config import ImpactConfig
from shopseg.errors import NotFoundError

__all__ = ["impact_for_run", "impact_table", "segment_figures"]

FIGURES = [
    "segment",
    "segment_name",
    "action",
    "customers",
    "orders",
    "revenue",
    "years",
    "orders_per_customer_year",
    "aov",
    "annual_revenue",
]
SCENARIOS = [
    "segment",
    "segment_name",
    "action",
    "scenario",
    "assumption",
    "customers",
    "orders_per_customer_year",
    "aov",
    "annual_revenue",
    "revenue_change",
    "change_share",
]


def segment_figures(backend: DuckDBBackend, as_of: datetime, segments: str = "segments") -> pd.DataFrame:
    """Per segment: customers, orders, revenue, the window in years, orders per customer per year, AOV and
    annual revenue (see the module docstring). Empty when the run has no order values."""
    if not backend.has_table(segments):
        raise NotFoundError(f"the run has no '{segments}' table; run the pipeline first")
    cols = {c for c, _ in backend.columns(segments)}
    name = "any_value(s.segment_name)" if "segment_name" in cols else "'Segment ' || s.segment"
    action = "any_value(s.action)" if "action" in cols else "''"
    if not backend.has_table("transactions") or not backend.scalar(
        "SELECT count(*) FROM (SELECT 1 FROM transactions LIMIT 1)"
    ):
        return pd.DataFrame(columns=FIGURES)
    t = f"TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}'"
    return backend.df(
        f"""
        WITH o AS (SELECT customer_id, count(order_id) AS orders, sum(r) AS revenue
                   FROM (SELECT customer_id, order_id, sum(quantity * unit_price) AS r FROM transactions
                         WHERE ts < {t} GROUP BY 1, 2) GROUP BY 1),
        w AS (SELECT greatest(date_diff('second', min(ts), {t}) / 86400.0, 1.0) / 365.25 AS years
              FROM transactions WHERE ts < {t}),
        g AS (SELECT s.segment, {name} AS segment_name, {action} AS action, count(*) AS customers,
                     coalesce(sum(o.orders), 0) AS orders, coalesce(sum(o.revenue), 0.0) AS revenue
              FROM {segments} s LEFT JOIN o USING (customer_id) GROUP BY s.segment)
        SELECT g.segment, g.segment_name, g.action, g.customers, g.orders, g.revenue, w.years,
               g.orders / g.customers / w.years AS orders_per_customer_year,
               CASE WHEN g.orders > 0 THEN g.revenue / g.orders END AS aov,
               g.revenue / w.years AS annual_revenue
        FROM g, w ORDER BY g.segment
        """
    )


def impact_table(figures: pd.DataFrame, cfg: ImpactConfig | None = None) -> pd.DataFrame:
    """One row per segment and scenario with the change in annual revenue (formulas in the module docstring)."""
    cfg = cfg or ImpactConfig()
    u, r, e = cfg.aov_uplift, cfg.retention_uplift, cfg.extra_orders
    rows = []
    for s in figures.itertuples():
        n, f, a, base = float(s.customers), float(s.orders_per_customer_year), s.aov, float(s.annual_revenue)
        a = 0.0 if a is None or pd.isna(a) else float(a)
        scen = [
            ("aov", f"AOV +{u:.0%}", base * u),
            ("retention", f"retention +{r:.0%}", r * n * f * a),
            ("extra_orders", f"+{e:g} order/customer/yr", n * e * a),
            ("combined", "all three", n * (1 + r) * (f + e) * a * (1 + u) - base),
        ]
        for key, text, delta in scen:
            rows.append(
                (
                    int(s.segment),
                    s.segment_name,
                    s.action,
                    key,
                    text,
                    int(n),
                    f,
                    a,
                    base,
                    delta,
                    delta / base if base > 0 else float("nan"),
                )
            )
    return pd.DataFrame(rows, columns=SCENARIOS)


def impact_for_run(run_dir: str, cfg: ImpactConfig | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Figures and scenarios of a finished run (``shopseg impact RUN_DIR``), with the run's ``[impact]``
    settings unless ``cfg`` is given."""
    from shopseg.insights.banners import load_run

    db, run_cfg, manifest = load_run(run_dir)
    as_of = datetime.fromisoformat(manifest["as_of"]) if manifest.get("as_of") else None
    backend = DuckDBBackend(db)
    try:
        if as_of is None:
            last = backend.scalar("SELECT max(ts) FROM transactions") if backend.has_table("transactions") else None
            if last is None:
                raise NotFoundError(f"run '{run_dir}' has no manifest as-of date and no orders")
            as_of = datetime(last.year, last.month, last.day)
        figures = segment_figures(backend, as_of)
    finally:
        backend.close()
    return figures, impact_table(figures, cfg or run_cfg.impact)
