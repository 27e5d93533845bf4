"""Segment names and actions from rules declared as data over profile z-scores.

Each archetype scores a segment as a weighted sum of its z-scores (segment mean of the log/standardised
feature against the population). Names are assigned greedily, highest score first, each name once; an
archetype is only given when its score reaches ``MIN_SCORE``. Segments left over are named by their most
distinctive feature. Names and actions can be overridden in the config.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Archetype:
    name: str
    weights: dict[str, float]
    action: str


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "High-value loyal",
        {"frequency": 1.0, "monetary": 1.0, "recency_days": -1.0},
        "Reward and retain: loyalty tier, early access and personal thanks; no blanket discounts; "
        "ask for reviews and referrals.",
    ),
    Archetype(
        "At risk",
        {"recency_days": 1.0, "frequency": 0.7, "monetary": 0.7},
        "Win back now: personal reactivation email with their usual products and a time-limited "
        "incentive; find out why they stopped.",
    ),
    Archetype(
        "New",
        {"tenure_days": -1.0, "recency_days": -0.5, "frequency": -0.3},
        "Onboard: welcome series, a second-purchase incentive and bestsellers bought by similar customers.",
    ),
    Archetype(
        "Hibernating",
        {"recency_days": 1.0, "frequency": -0.6, "monetary": -0.6},
        "Low-cost reactivation: seasonal newsletter and one win-back offer; drop from paid retargeting "
        "if they do not respond.",
    ),
    Archetype(
        "Big-basket buyers",
        {"avg_order_value": 1.0, "mean_basket_items": 0.5, "frequency": -0.3},
        "Upsell bulk and premium ranges, offer volume pricing or trade terms; remind them before "
        "their usual reorder time.",
    ),
    Archetype(
        "Bargain buyers",
        {"avg_order_value": -1.0, "mean_unit_price": -0.5},
        "Price-led offers: bundles, multi-buy and clearance alerts; protect margin with threshold-based free shipping.",
    ),
    Archetype(
        "Loyal regulars",
        {"frequency": 0.8, "recency_days": -0.8, "avg_order_value": -0.2},
        "Cross-sell adjacent categories and set up replenishment reminders; invite to the loyalty programme.",
    ),
)

MIN_SCORE = 0.5
_READABLE = {
    "recency_days": ("recent", "lapsed"),
    "frequency": ("frequent", "rare"),
    "monetary": ("high-spend", "low-spend"),
    "avg_order_value": ("large-order", "small-order"),
    "tenure_days": ("long-standing", "new"),
}
FALLBACK_ACTION = "Keep warm with the newsletter; test an incentive for the next order and watch the response."


def name_segments(z: pd.DataFrame) -> pd.DataFrame:
    """``z``: one row per segment (index), columns = features. Returns name, action, score, earned_by."""
    scores: list[tuple[float, int, int]] = []  # (score, archetype index, segment)
    for a_i, arch in enumerate(ARCHETYPES):
        for seg in z.index:
            s = sum(w * float(z.at[seg, f]) for f, w in arch.weights.items() if f in z.columns)
            usable = sum(abs(w) for f, w in arch.weights.items() if f in z.columns)
            if usable > 0:
                scores.append((s / usable * 2, a_i, int(seg)))
    scores.sort(key=lambda t: (-t[0], t[1], t[2]))
    assigned: dict[int, tuple[str, str, float, str]] = {}
    used: set[int] = set()
    for s, a_i, seg in scores:
        if s < MIN_SCORE or seg in assigned or a_i in used:
            continue
        arch = ARCHETYPES[a_i]
        contrib = sorted(
            ((f, w * float(z.at[seg, f])) for f, w in arch.weights.items() if f in z.columns),
            key=lambda t: -t[1],
        )
        earned = ", ".join(f"{f} z={float(z.at[seg, f]):+.2f}" for f, c in contrib if c > 0)
        assigned[seg] = (arch.name, arch.action, round(s, 3), earned)
        used.add(a_i)
    taken = {v[0] for v in assigned.values()}
    for seg in z.index:
        seg = int(seg)
        if seg in assigned:
            continue
        row = z.loc[seg, [c for c in _READABLE if c in z.columns]]
        if row.empty or row.abs().max() < 0.25:
            base = "Average customers"
            earned = "no feature far from the population mean"
        else:
            f = str(row.abs().idxmax())
            word = _READABLE[f][0 if row[f] > 0 else 1]
            if f == "recency_days":
                word = _READABLE[f][1 if row[f] > 0 else 0]
            base = f"{word.capitalize()} customers"
            earned = f"{f} z={float(row[f]):+.2f}"
        name = base
        i = 2
        while name in taken:
            name = f"{base} {i}"
            i += 1
        taken.add(name)
        assigned[seg] = (name, FALLBACK_ACTION, 0.0, earned)
    out = pd.DataFrame.from_dict(assigned, orient="index", columns=["name", "action", "name_score", "earned_by"])
    out.index.name = "segment"
    return out.sort_index()
