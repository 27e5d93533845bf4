"""Segment profiles (size, value share, feature means/medians, z-scores, dimensions, names and actions),
readable rules that explain each segment (:mod:`shopseg.profile.explain`) and per-segment top categories."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from shopseg.backends.duckdb import DuckDBBackend
from shopseg.profile.explain import (
    Condition,
    Rule,
    SegmentRules,
    SegmentRuleSet,
    apply_rules,
    explain_segments,
    load_rules,
    rule_fidelity,
)
from shopseg.profile.naming import (
    DIMENSIONS,
    NAMING_RULES,
    Dimension,
    NamingRule,
    apply_overrides,
    dimension_scores,
    name_segments,
)
from shopseg.segment.preprocess import Preprocessor

__all__ = [
    "DIMENSIONS",
    "NAMING_RULES",
    "Condition",
    "Dimension",
    "NamingRule",
    "Rule",
    "SegmentRuleSet",
    "SegmentRules",
    "apply_overrides",
    "apply_rules",
    "dimension_scores",
    "explain_segments",
    "load_rules",
    "name_segments",
    "profile_segments",
    "rule_fidelity",
    "segment_top_categories",
]


def profile_segments(
    features: pd.DataFrame,
    labels: np.ndarray,
    numeric: list[str],
    overrides: Mapping[str, Mapping[str, str | None]] | None = None,
    *,
    notes: list[str] | None = None,
    given: Mapping[int, str] | None = None,
) -> pd.DataFrame:
    """One row per segment: name, action, naming details, size, shares, mean_/median_/z_ per feature, dim_*.

    z-scores are taken on the same log/standardised scale the model uses, so a skewed spend does not
    dominate: z = segment mean of the transformed feature (population mean 0, sd 1). Dimensions (``dim_*``)
    combine them as declared in :data:`~shopseg.profile.naming.DIMENSIONS`.

    ``overrides`` (the config's ``[profile.names]``) maps a segment number or an automatic name to
    ``{"name": ..., "action": ...}``; keys that match no segment are reported in ``notes`` when given.
    ``given``: names the segmentation algorithm gave itself (see :func:`~shopseg.profile.naming.name_segments`).
    """
    frame = features.copy()
    frame["segment"] = labels
    prep = Preprocessor(list(numeric)).fit(frame)
    zt = pd.DataFrame(prep.transform(frame), columns=prep.features)
    zt["segment"] = labels
    z = zt.groupby("segment").mean()
    g = frame.groupby("segment")
    total_rev = float(frame["monetary"].sum()) if "monetary" in frame else 0.0
    prof = pd.DataFrame(
        {
            "size": g.size(),
            "share_customers": g.size() / len(frame),
            "share_revenue": (g["monetary"].sum() / total_rev) if total_rev else np.nan,
        }
    )
    means = g[numeric].mean().add_prefix("mean_")
    medians = g[numeric].median().add_prefix("median_")
    names = name_segments(z, given)
    unmatched = apply_overrides(names, overrides)
    if unmatched and notes is not None:
        known = ", ".join(f"{s} '{n}'" for s, n in names["name"].items())
        notes.append(
            f"[profile.names] keys {unmatched} match no segment of this run and were ignored; "
            f"use a segment number or an automatic name ({known})"
        )
    out = names.join(prof).join(means).join(medians).join(z.add_prefix("z_"))
    out.index.name = "segment"
    return out.reset_index()


def segment_top_categories(backend: DuckDBBackend, n: int = 5, segments: str = "segments") -> pd.DataFrame:
    """Top ``n`` categories per segment by the segment's spend, with the spend share and its lift against all
    customers (share in the segment / share overall). Empty when the run has no category column.

    ``segments`` names a table with ``customer_id`` and ``segment``.
    """
    has = backend.scalar("SELECT count(*) FROM (SELECT category FROM transactions WHERE category IS NOT NULL LIMIT 1)")
    if not has:
        return pd.DataFrame(columns=["segment", "rank", "category", "spend", "spend_share", "lift"])
    return backend.df(
        f"""
        WITH spend AS (
            SELECT s.segment, t.category, sum(t.quantity * t.unit_price) AS spend
            FROM transactions t JOIN {segments} s USING (customer_id)
            WHERE t.category IS NOT NULL
            GROUP BY 1, 2
        ),
        seg AS (SELECT segment, sum(spend) AS total FROM spend GROUP BY 1),
        cat AS (SELECT category, sum(spend) / (SELECT sum(spend) FROM spend) AS overall FROM spend GROUP BY 1),
        ranked AS (
            SELECT spend.segment, spend.category, spend.spend, spend.spend / seg.total AS spend_share,
                   (spend.spend / seg.total) / cat.overall AS lift,
                   row_number() OVER (PARTITION BY spend.segment ORDER BY spend.spend DESC, spend.category) AS rank
            FROM spend JOIN seg USING (segment) JOIN cat USING (category)
        )
        SELECT segment, rank, category, spend, spend_share, lift FROM ranked WHERE rank <= {int(n)}
        ORDER BY segment, rank
        """
    )
