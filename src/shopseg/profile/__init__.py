"""Segment profiles: size, value share, feature means/medians, z-scores, names and actions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shopseg.profile.naming import ARCHETYPES, Archetype, name_segments
from shopseg.segment.preprocess import Preprocessor

__all__ = ["ARCHETYPES", "Archetype", "name_segments", "profile_segments"]


def profile_segments(
    features: pd.DataFrame,
    labels: np.ndarray,
    numeric: list[str],
    overrides: dict[str, dict[str, str]] | None = None,
) -> pd.DataFrame:
    """One row per segment: size, shares, mean_/median_/z_ per feature, name and action.

    z-scores are taken on the same log/standardised scale the model uses, so a skewed spend does not
    dominate: z = segment mean of the transformed feature (population mean 0, sd 1).
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
    names = name_segments(z)
    for seg, o in (overrides or {}).items():
        s = int(seg)
        if s in names.index:
            if "name" in o:
                names.at[s, "name"] = o["name"]
                names.at[s, "earned_by"] = "set in the config"
            if "action" in o:
                names.at[s, "action"] = o["action"]
    out = names.join(prof).join(means).join(medians).join(z.add_prefix("z_"))
    out.index.name = "segment"
    return out.reset_index()
