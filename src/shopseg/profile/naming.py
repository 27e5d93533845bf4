"""Segment names and actions from rules declared as data over profile *dimensions*.

A segment's profile holds, for every feature, the z-score of the segment mean (on the model's log/standardised
scale, population mean 0 and sd 1). Those z-scores are combined into a few readable **dimensions**
(:data:`DIMENSIONS`: value, frequency, recency, tenure, breadth, price level, engagement, and coupon use); each
dimension is a weighted mean of the z-scores of the features it lists, skipping features a run lacks, and is
missing when a run has none of them.

The **naming rules** (:data:`NAMING_RULES`) are conditions on dimensions, e.g. *At risk: recency ≥ +0.5 and
value ≥ 0*. A rule fits a segment when every condition holds (a rule whose dimension is missing never fits);
its score is the mean of the dimension values taken in the rule's direction. Each rule names at most one
segment, so names are unique; the assignment is optimal (scipy's ``linear_sum_assignment``): first as many
segments as possible get a rule's name, then the sum of their scores is as high as possible. A greedy "best
pair first" would, for example, call a high-value, very frequent, recent segment *Loyal regulars* and leave the
moderately frequent recent segment without a name, where the optimum calls them *Premium customers* and *Loyal
regulars*. Segments no rule fits are named after their most distinctive dimension ("Frequent customers",
"Average customers"), made unique by adding the next most distinctive one. Names an algorithm gives itself (RFM
segments, HDBSCAN's "unassigned" noise) are kept. Every name comes with the features that earned it
(``earned_by``) and an action; when the run has coupon data (features named ``coupon_*``) the action adds which
kind of coupon campaign the segment should get. Names and actions can be overridden in the config (``[profile.names]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from shopseg.errors import ConfigError

__all__ = [
    "DIMENSIONS",
    "FALLBACK_ACTION",
    "GIVEN_ACTIONS",
    "NAMING_RULES",
    "Dimension",
    "NamingRule",
    "apply_overrides",
    "dimension_scores",
    "name_segments",
    "naming_rules_markdown",
]


@dataclass(frozen=True)
class Dimension:
    """A readable profile dimension: a weighted mean of feature z-scores.

    ``weights`` maps feature name → weight (the sign gives the direction); ``prefix`` adds every feature whose
    name starts with it, with weight 1. Features a run lacks are skipped; the weights of the present ones are
    normalised by the sum of their absolute values.
    """

    name: str
    description: str
    weights: Mapping[str, float]
    prefix: str | None = None

    def members(self, columns: list[str] | pd.Index) -> dict[str, float]:
        cols = list(columns)
        out = {f: w for f, w in self.weights.items() if f in cols}
        if self.prefix:
            out.update({c: 1.0 for c in cols if c.startswith(self.prefix) and c not in out})
        return out


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension(
        "value",
        "what the customer is worth: total spend (orders, or purchase events), and spend per order at half weight",
        {"monetary": 1.0, "avg_order_value": 0.5, "spend": 1.0, "avg_purchase_value": 0.5},
    ),
    Dimension(
        "frequency",
        "how often they buy: orders (or purchase events), and distinct active months at half weight",
        {"frequency": 1.0, "active_months": 0.5, "purchase_count": 1.0},
    ),
    Dimension(
        "recency",
        "time since the last order (or event, or coupon): positive = longer ago than the average customer "
        "(lapsing), negative = recent",
        {"recency_days": 1.0, "days_since_last_event": 1.0, "days_since_last_coupon": 1.0},
    ),
    Dimension(
        "tenure",
        "time since the first order (or event, or joining): negative = new to the shop",
        {"tenure_days": 1.0, "days_since_first_event": 1.0, "days_since_join": 1.0},
    ),
    Dimension(
        "breadth",
        "how widely they buy: distinct products and categories bought; lines per order and categories and "
        "brands browsed at half weight",
        {
            "distinct_products": 1.0,
            "distinct_categories_bought": 1.0,
            "mean_basket_lines": 0.5,
            "distinct_categories_viewed": 0.5,
            "distinct_brands_viewed": 0.5,
        },
    ),
    Dimension(
        "price_level",
        "what they pay: spend per unit bought, or the mean price of the products they view",
        {"mean_unit_price": 1.0, "mean_viewed_price": 1.0},
    ),
    Dimension(
        "engagement",
        "how much they use the site (clickstream features, when the run has them): sessions, views and active "
        "days; events per session and session length at half weight",
        {
            "sessions": 1.0,
            "views": 1.0,
            "active_days": 1.0,
            "events_per_session": 0.5,
            "session_duration_mean": 0.5,
        },
    ),
    Dimension(
        "coupon",
        "how much they use coupons: the mean z-score of every coupon_* feature (used for actions, not names)",
        {},
        prefix="coupon_",
    ),
)

_DIM_BY_NAME = {d.name: d for d in DIMENSIONS}

Op = str  # ">=" or "<="


@dataclass(frozen=True)
class NamingRule:
    """A name given to a segment when every condition ``(dimension, op, threshold)`` holds."""

    name: str
    when: tuple[tuple[str, Op, float], ...]
    action: str
    coupon: str
    purpose: str

    def describe(self) -> str:
        return " and ".join(f"{d} {'≥' if op == '>=' else '≤'} {t:+.1f}" for d, op, t in self.when)


NAMING_RULES: tuple[NamingRule, ...] = (
    NamingRule(
        "Premium customers",
        (("value", ">=", 0.8), ("recency", "<=", 0.0)),
        "Loyalty: VIP tier, early access, personal thanks and service; no blanket discounts; ask for reviews "
        "and referrals.",
        "no percentage coupons; exclusive-access or gift-with-purchase vouchers only",
        "loyalty",
    ),
    NamingRule(
        "Loyal regulars",
        (("frequency", ">=", 0.0), ("recency", "<=", -0.2)),
        "Loyalty and cross-sell: invite to the loyalty programme, set up replenishment reminders and suggest "
        "adjacent categories.",
        "loyalty points or a birthday voucher rather than percentage coupons",
        "loyalty, cross-sell",
    ),
    NamingRule(
        "Efficient buyers",
        (("value", ">=", 0.3), ("frequency", "<=", 0.0), ("recency", "<=", 0.5)),
        "Convenience: reorder button and saved baskets (UX test), reminders before their usual reorder time, "
        "bundles and volume pricing.",
        "a spend-threshold coupon just above their usual basket",
        "cross-sell, UX tests",
    ),
    NamingRule(
        "Budget browsers",
        (("price_level", "<=", -0.4), ("value", "<=", -0.2)),
        "Discounts: price-led offers, bundles, multi-buy and clearance alerts; protect margin with "
        "threshold-based free shipping.",
        "percentage coupons on clearance and multi-buy items",
        "discounts",
    ),
    NamingRule(
        "Category explorers",
        (("breadth", ">=", 0.6),),
        "Cross-sell: curated discovery emails, 'complete the set' and new-arrival alerts in categories they "
        "have not bought yet.",
        "a category-entry coupon for a category they have not bought from",
        "cross-sell",
    ),
    NamingRule(
        "Window shoppers",
        (("engagement", ">=", 0.5), ("value", "<=", -0.3)),
        "UX tests: A/B-test product pages, delivery-cost transparency and checkout friction; cart-abandonment "
        "reminders.",
        "a first-purchase or cart-abandonment coupon with a short expiry",
        "UX tests",
    ),
    NamingRule(
        "New customers",
        (("tenure", "<=", -0.7), ("recency", "<=", 0.5)),
        "Onboarding: welcome series, bestsellers bought by similar customers and a second-purchase incentive.",
        "a second-order coupon with a short expiry",
        "loyalty",
    ),
    NamingRule(
        "At risk",
        (("recency", ">=", 0.5), ("value", ">=", 0.0)),
        "Reactivation now: personal win-back email with their usual products and a time-limited incentive; "
        "find out why they stopped.",
        "a time-limited win-back coupon on their usual category",
        "reactivation",
    ),
    NamingRule(
        "Hibernating",
        (("recency", ">=", 0.5), ("value", "<=", 0.0)),
        "Low-cost reactivation: seasonal newsletter and one win-back offer; drop from paid retargeting if they "
        "do not respond.",
        "one deep coupon in a seasonal campaign; stop if unused",
        "reactivation, discounts",
    ),
)

#: Names an algorithm gives itself (lower case) → the naming rule whose action they get.
GIVEN_ACTIONS: dict[str, str] = {
    "champions": "Premium customers",
    "loyal": "Loyal regulars",
    "potential loyalist": "Loyal regulars",
    "new": "New customers",
    "promising": "New customers",
    "need attention": "At risk",
    "about to sleep": "At risk",
    "at risk": "At risk",
    "can't lose them": "At risk",
    "hibernating": "Hibernating",
    "lost": "Hibernating",
}
NOISE_ACTION = (
    "No common pattern (customers the segmentation left unassigned): keep them on the shop-wide programme and "
    "review the valuable ones by hand."
)
FALLBACK_ACTION = "Keep warm with the newsletter; test an incentive for the next order and watch the response."
FALLBACK_COUPON = "a modest coupon to a random half only, to measure whether coupons move this segment"

#: Words for a dimension far above (first) or below (second) the average, for segments no rule fits.
_WORDS = {
    "value": ("High-value", "Low-value"),
    "frequency": ("Frequent", "Occasional"),
    "recency": ("Lapsing", "Recent"),
    "tenure": ("Long-standing", "Newer"),
    "breadth": ("Broad-basket", "Narrow-basket"),
    "price_level": ("Upmarket", "Low-price"),
    "engagement": ("Engaged", "Quiet"),
}
_BONUS = 100.0
_FORBIDDEN = 1e9
#: A dimension counts as distinctive for a fallback name when its |z| reaches this.
DISTINCT_Z = 0.25


def dimension_scores(z: pd.DataFrame) -> pd.DataFrame:
    """Dimensions per segment from feature z-scores (``z``: index = segment, columns = features).

    Missing dimensions (no member feature in ``z``) are left out of the result.
    """
    out = {}
    for d in DIMENSIONS:
        m = d.members(z.columns)
        if not m:
            continue
        total = sum(abs(w) for w in m.values())
        out[d.name] = sum(w * z[f].astype(float) for f, w in m.items()) / total
    return pd.DataFrame(out, index=z.index)


def _earned(z: pd.DataFrame, dims: pd.DataFrame, seg: int, used: list[str]) -> str:
    parts = []
    for name in used:
        m = _DIM_BY_NAME[name].members(z.columns)
        feats = ", ".join(f"{f} {float(z.at[seg, f]):+.2f}" for f in m)
        parts.append(f"{name} {float(dims.at[seg, name]):+.2f} ({feats})")
    return "; ".join(parts)


def _fits(rule: NamingRule, row: pd.Series) -> float | None:
    """The rule's score for one segment, or None when a condition fails or its dimension is missing."""
    vals = []
    for dim, op, t in rule.when:
        if dim not in row.index or not np.isfinite(row[dim]):
            return None
        v = float(row[dim])
        if (op == ">=" and v < t) or (op == "<=" and v > t):
            return None
        vals.append(v if op == ">=" else -v)
    return float(np.mean(vals))


def _fallback(row: pd.Series, taken: set[str]) -> tuple[str, list[str]]:
    present = [d for d in _WORDS if d in row.index and np.isfinite(row[d]) and abs(float(row[d])) >= DISTINCT_Z]
    ranked = sorted(present, key=lambda d: (-abs(float(row[d])), d))
    if not ranked:
        base, used = "Average customers", []
    else:
        words = [_WORDS[d][0 if row[d] > 0 else 1] for d in ranked]
        base, used = f"{words[0]} customers", ranked[:1]
        for i in range(1, len(ranked)):
            if base not in taken:
                break
            base = f"{', '.join([words[0], *[w.lower() for w in words[1 : i + 1]]])} customers"
            used = ranked[: i + 1]
    name, i = base, 2
    while name in taken:
        name = f"{base} ({i})"
        i += 1
    return name, used


def name_segments(z: pd.DataFrame, given: Mapping[int, str] | None = None) -> pd.DataFrame:
    """Name every segment from its feature z-scores (index = segment, columns = features).

    ``given`` maps segments to names the segmentation algorithm gave itself (RFM's Champions … Lost, HDBSCAN's
    ``unassigned`` noise; negative segment numbers are ``unassigned`` anyway): they keep them, with the action
    of the matching rule (:data:`GIVEN_ACTIONS`), and a naming rule of the same name is not given to another
    segment.

    Returns one row per segment (index ``segment``): ``name``, ``action``, ``name_score`` (the rule's score;
    0 for fallback and given names), ``name_rule`` (the rule's conditions, or empty), ``earned_by`` (the
    dimensions and the features behind them) and ``dim_<dimension>`` for every dimension the run has.
    """
    dims = dimension_scores(z)
    has_coupons = "coupon" in dims.columns
    fixed = {int(k): str(v) for k, v in (given or {}).items() if int(k) in {int(x) for x in dims.index}}
    fixed |= {int(x): "unassigned" for x in dims.index if int(x) < 0 and int(x) not in fixed}  # noise (-1)
    rows: dict[int, dict[str, object]] = {}
    for seg, name in fixed.items():
        rule_name = GIVEN_ACTIONS.get(name.lower())
        rule = next((r for r in NAMING_RULES if r.name == rule_name), None)
        action = rule.action if rule else (NOISE_ACTION if name.lower() == "unassigned" else FALLBACK_ACTION)
        if has_coupons:
            kind = rule.coupon if rule else FALLBACK_COUPON
            action += " " + _coupon_advice(kind, float(dims.at[seg, "coupon"]))
        rows[seg] = {
            "name": name,
            "action": action,
            "name_score": 0.0,
            "name_rule": "",
            "earned_by": "named by the segmentation algorithm",
        }
    rules = [r for r in NAMING_RULES if r.name not in set(fixed.values())]
    segs = [int(x) for x in dims.index if int(x) not in fixed]
    # rows: segments; columns: one per rule, then one "no rule" column per segment (score 0). A fitting rule
    # scores _BONUS + its score, so the assignment first names as many segments as it can.
    gain = np.full((len(segs), len(rules) + len(segs)), -_FORBIDDEN)
    gain[:, len(rules) :] = 0.0
    scores: dict[tuple[int, int], float] = {}
    for r_i, rule in enumerate(rules):
        for s_i, seg in enumerate(segs):
            s = _fits(rule, dims.loc[seg])
            if s is not None:
                scores[(s_i, r_i)] = s
                gain[s_i, r_i] = _BONUS + s
    row_ind, col_ind = linear_sum_assignment(gain, maximize=True)
    for s_i, r_i in zip(row_ind.tolist(), col_ind.tolist(), strict=True):
        if r_i >= len(rules) or (s_i, r_i) not in scores:
            continue
        seg, rule = segs[s_i], rules[r_i]
        action = rule.action
        if has_coupons:
            action += " " + _coupon_advice(rule.coupon, float(dims.at[seg, "coupon"]))
        rows[seg] = {
            "name": rule.name,
            "action": action,
            "name_score": round(scores[(s_i, r_i)], 3),
            "name_rule": rule.describe(),
            "earned_by": _earned(z, dims, seg, list(dict.fromkeys(d for d, _, _ in rule.when))),
        }
    taken = {str(v["name"]) for v in rows.values()}
    for seg in dims.index:
        seg = int(seg)
        if seg in rows:
            continue
        name, used = _fallback(dims.loc[seg], taken)
        taken.add(name)
        action = FALLBACK_ACTION
        if has_coupons:
            action += " " + _coupon_advice(FALLBACK_COUPON, float(dims.at[seg, "coupon"]))
        rows[seg] = {
            "name": name,
            "action": action,
            "name_score": 0.0,
            "name_rule": "",
            "earned_by": _earned(z, dims, seg, used) if used else "no dimension far from the average customer",
        }
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "segment"
    out = out.sort_index()
    return out.join(dims.add_prefix("dim_"))


def _coupon_advice(kind: str, coupon_z: float) -> str:
    if coupon_z >= DISTINCT_Z:
        habit = "they use coupons more than most, so a coupon is likely to work"
    elif coupon_z <= -DISTINCT_Z:
        habit = "they rarely use coupons: send one only as a test, and spend the budget on other levers"
    else:
        habit = "their coupon use is average"
    return f"Coupon campaign: {kind} ({habit}, coupon z {coupon_z:+.2f})."


def apply_overrides(names: pd.DataFrame, overrides: Mapping[str, Mapping[str, str | None]] | None) -> list[str]:
    """Apply config overrides in place; returns the keys that matched no segment.

    Keys are segment numbers (``"0"``) or automatic names (``"At risk"``); values may set ``name`` and/or
    ``action``. A renamed segment's ``earned_by`` says so. Raises :class:`ConfigError` when the result would
    give two segments the same name.
    """
    unmatched: list[str] = []
    auto = {str(n): int(s) for s, n in names["name"].items()}
    for key, o in (overrides or {}).items():
        k = str(key).strip()
        seg = int(k) if k.lstrip("-").isdigit() and int(k) in names.index else auto.get(k)
        if seg is None:
            unmatched.append(str(key))
            continue
        if o.get("name"):
            names.at[seg, "earned_by"] = f"named in the config (automatic name: {names.at[seg, 'name']})"
            names.at[seg, "name"] = str(o["name"])
        if o.get("action"):
            names.at[seg, "action"] = str(o["action"])
    dup = names["name"][names["name"].duplicated(keep=False)]
    if not dup.empty:
        pairs = ", ".join(f"segment {s}: '{n}'" for s, n in dup.items())
        raise ConfigError(
            f"[profile.names] gives two segments the same name ({pairs}); names must be unique — "
            "choose a different name for one of them"
        )
    return unmatched


def naming_rules_markdown() -> str:
    """The dimensions and naming rules as Markdown tables (docs/method.md quotes this)."""
    lines = ["| dimension | features (weight) | meaning |", "|---|---|---|"]
    for d in DIMENSIONS:
        feats = ", ".join(f"`{f}` ({w:+g})" for f, w in d.weights.items())
        if d.prefix:
            feats = (feats + ", " if feats else "") + f"every `{d.prefix}*` feature (+1)"
        lines.append(f"| {d.name} | {feats} | {d.description} |")
    lines += ["", "| name | when (dimension z-scores) | purpose | action | coupon campaign |", "|---|---|---|---|---|"]
    for r in NAMING_RULES:
        lines.append(f"| {r.name} | {r.describe()} | {r.purpose} | {r.action} | {r.coupon} |")
    return "\n".join(lines)
