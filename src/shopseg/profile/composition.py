"""Categorical composition of segments: which share of each segment has each value of an attribute.

``segment_composition`` gives one row per segment × attribute × value with the exact share (customers with
the value / customers in the segment), the share among all customers and the lift (segment share / overall
share). Missing values are the value ``(missing)``; an attribute's values beyond the ``max_values - 1`` most
frequent overall are summed as ``(other)``. ``composition_summary`` words the top values per segment
("57 % Male · 100 % Cairo") for the report's cards and the CLI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shopseg.errors import SchemaError
from shopseg.segment.mixed import OTHER, _as_text

__all__ = ["composition_summary", "composition_wide", "segment_composition"]

COLUMNS = ["segment", "attribute", "value", "customers", "share", "overall_share", "lift"]


def segment_composition(
    frame: pd.DataFrame, labels: np.ndarray, attributes: list[str], *, max_values: int = 10
) -> pd.DataFrame:
    """Segment × attribute value shares (see the module docstring); sorted by segment, attribute, share."""
    if len(frame) != len(labels):
        raise SchemaError(f"{len(labels)} labels for {len(frame)} customers")
    missing = [a for a in attributes if a not in frame.columns]
    if missing:
        raise SchemaError(f"attributes {missing} are not in the table; it has {list(frame.columns)}")
    if max_values < 2:
        raise SchemaError(f"max_values must be at least 2, got {max_values}")
    lab = pd.Series(np.asarray(labels), index=frame.index, name="segment")
    sizes = lab.value_counts()
    n = len(frame)
    parts = []
    for a in attributes:
        values = _as_text(frame[a])
        overall = values.value_counts()
        order = sorted(overall.index, key=lambda v: (-int(overall[v]), str(v)))
        if len(order) > max_values:
            keep = set(order[: max_values - 1])
            values = values.where(values.isin(keep), OTHER)
            overall = values.value_counts()
        counts = pd.crosstab(lab, values).stack()
        counts = counts[counts > 0]
        df = counts.rename("customers").reset_index()
        df.columns = ["segment", "value", "customers"]
        df.insert(1, "attribute", a)
        df["share"] = df["customers"] / df["segment"].map(sizes).to_numpy()
        df["overall_share"] = df["value"].map(overall).to_numpy() / n
        parts.append(df)
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    out["lift"] = out["share"] / out["overall_share"]
    out["segment"] = out["segment"].astype("int64")
    out["customers"] = out["customers"].astype("int64")
    out["value"] = out["value"].astype(str)
    out = out.sort_values(["segment", "attribute", "share", "value"], ascending=[True, True, False, True])
    return out[COLUMNS].reset_index(drop=True)


def composition_summary(composition: pd.DataFrame, top: int = 1) -> dict[int, str]:
    """Per segment, the ``top`` most common values of each attribute: {0: "57 % Male · 100 % Cairo", …}."""
    out: dict[int, str] = {}
    for seg, g in composition.groupby("segment", sort=True):
        bits = []
        for _, h in g.groupby("attribute", sort=False):
            for r in h.head(top).itertuples():
                bits.append(f"{r.share:.0%} {r.value}".replace("%", " %"))
        out[int(seg)] = " · ".join(bits)  # type: ignore[arg-type]
    return out


def composition_wide(composition: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """Report layout: one row per segment and attribute, the ``top`` values with their shares in one cell."""
    rows = []
    for (seg, attr), g in composition.groupby(["segment", "attribute"], sort=True):
        cells = ", ".join(f"{r.value} {r.share:.0%}" for r in g.head(top).itertuples())
        rows.append((int(seg), str(attr), cells, len(g)))  # type: ignore[call-overload]
    return pd.DataFrame(rows, columns=["segment", "attribute", f"top {top} values (share of the segment)", "values"])
