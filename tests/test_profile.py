"""Profiles, dimensions and names: hand-made z-score profiles with known names, uniqueness, earned_by,
coupon campaigns, config overrides, and hand-computed profile figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shopseg.config import load_config
from shopseg.errors import ConfigError
from shopseg.profile import NAMING_RULES, dimension_scores, name_segments, profile_segments
from shopseg.profile.naming import apply_overrides, naming_rules_markdown


def _z(rows: dict[str, dict[str, float]], columns: list[str] | None = None) -> pd.DataFrame:
    """Segments 0, 1, … in the order given; features not mentioned are 0 (average)."""
    cols = columns or sorted({f for r in rows.values() for f in r})
    z = pd.DataFrame([{c: r.get(c, 0.0) for c in cols} for r in rows.values()], columns=cols)
    z.index.name = "segment"
    return z


TX = ["recency_days", "frequency", "monetary", "avg_order_value", "tenure_days", "active_months"]
TX += ["distinct_products", "mean_basket_lines", "mean_unit_price"]


def test_dimensions_are_weighted_means_of_present_features() -> None:
    z = _z({"a": {"monetary": 1.0, "avg_order_value": 0.4, "frequency": -0.6, "active_months": 0.3}}, TX)
    d = dimension_scores(z)
    assert d.at[0, "value"] == pytest.approx((1.0 + 0.5 * 0.4) / 1.5)
    assert d.at[0, "frequency"] == pytest.approx((-0.6 + 0.5 * 0.3) / 1.5)
    assert "engagement" not in d.columns and "coupon" not in d.columns  # no clickstream or coupon features
    only_monetary = dimension_scores(_z({"a": {"monetary": 0.9}}, ["monetary"]))
    assert list(only_monetary.columns) == ["value"] and only_monetary.at[0, "value"] == pytest.approx(0.9)
    coupons = dimension_scores(_z({"a": {"coupon_burned": 1.0, "coupon_used_share": 0.0}}))
    assert coupons.at[0, "coupon"] == pytest.approx(0.5)


def test_hand_made_profiles_get_the_typical_names() -> None:
    z = _z(
        {
            "premium": {"monetary": 1.6, "avg_order_value": 1.2, "frequency": 1.5, "recency_days": -1.4},
            "regular": {"frequency": 0.4, "recency_days": -0.5, "monetary": 0.1},
            "efficient": {"monetary": 0.6, "avg_order_value": 1.4, "frequency": -0.4, "recency_days": 0.2},
            "budget": {"mean_unit_price": -1.1, "monetary": -0.5, "avg_order_value": -0.4, "recency_days": 0.2},
            "explorer": {"distinct_products": 1.4, "mean_basket_lines": 1.0, "frequency": -0.2, "monetary": -0.1},
            "new": {"tenure_days": -1.5, "recency_days": -0.3, "frequency": -0.9, "monetary": -0.6},
            "at_risk": {"recency_days": 1.3, "monetary": 0.4, "tenure_days": 0.6},
            "hibernating": {"recency_days": 1.1, "monetary": -0.8, "frequency": -0.7},
        },
        TX,
    )
    names = name_segments(z)
    assert names["name"].tolist() == [
        "Premium customers",
        "Loyal regulars",
        "Efficient buyers",
        "Budget browsers",
        "Category explorers",
        "New customers",
        "At risk",
        "Hibernating",
    ]
    assert names["name"].is_unique
    assert (
        names.at[6, "earned_by"]
        == "recency +1.30 (recency_days +1.30); value +0.27 (monetary +0.40, avg_order_value +0.00)"
    )
    assert names.at[6, "name_rule"] == "recency ≥ +0.5 and value ≥ +0.0"
    assert "distinct_products +1.40" in names.at[4, "earned_by"]
    assert names.at[0, "name_score"] == pytest.approx(((1.6 + 0.6) / 1.5 + 1.4) / 2, abs=1e-3)
    assert "reactivation" in names.at[6, "action"].lower() and "Coupon" not in names.at[6, "action"]
    assert "loyalty" in names.at[0, "action"].lower() and "cross-sell" in names.at[4, "action"].lower()


def test_window_shoppers_need_clickstream_features() -> None:
    rows = {"browsers": {"sessions": 1.2, "views": 1.0, "monetary": -0.9}, "other": {"monetary": 0.1}}
    with_events = name_segments(_z(rows, [*TX, "sessions", "views"]))
    assert with_events.at[0, "name"] == "Window shoppers"
    assert "UX" in with_events.at[0, "action"]
    assert "sessions +1.20" in with_events.at[0, "earned_by"]
    without = name_segments(_z({"browsers": {"monetary": -0.9}, "other": {"monetary": 0.1}}, TX))
    assert "Window shoppers" not in without["name"].tolist()


def test_names_are_unique_when_two_segments_fit_the_same_rule() -> None:
    z = _z(
        {
            "lapsed_a": {"recency_days": 1.5, "monetary": 0.6},
            "lapsed_b": {"recency_days": 0.9, "monetary": 0.2},
            "lapsed_c": {"recency_days": 0.8, "monetary": 0.45},
            "average": {"recency_days": 0.1},
            "average2": {"recency_days": -0.1},
        },
        TX,
    )
    names = name_segments(z)
    assert names["name"].is_unique
    assert names.at[0, "name"] == "At risk"  # the strongest fit keeps the name
    # the other two lapsed segments get a dimension-based name that says why
    assert names.at[1, "name"] == "Lapsing customers" and names.at[1, "name_score"] == 0
    assert names.at[2, "name"] == "Lapsing, high-value customers"
    assert names.at[1, "earned_by"].startswith("recency +0.90")
    assert names.at[3, "name"] == "Average customers" and names.at[4, "name"] == "Average customers (2)"
    assert names.at[3, "earned_by"] == "no dimension far from the average customer"


def test_optimal_assignment_names_both_premium_and_loyal() -> None:
    # a greedy "best pair first" would call segment 0 Loyal regulars (score 1.50 > 1.45) and leave segment 1
    # unnamed; the assignment maximises the number of named segments first
    z = _z(
        {
            "top": {"monetary": 1.5, "avg_order_value": 1.5, "frequency": 2.4, "recency_days": -1.4},
            "mid": {"frequency": 0.2, "recency_days": -0.3},
        },
        TX,
    )
    names = name_segments(z)
    assert names["name"].tolist() == ["Premium customers", "Loyal regulars"]


def test_coupon_campaigns_when_coupon_data_exists() -> None:
    z = _z(
        {
            "lapsed": {"recency_days": 1.2, "monetary": 0.3, "coupon_burned": 0.8, "coupon_used_share": 0.6},
            "premium": {"monetary": 1.5, "recency_days": -0.8, "coupon_burned": -0.9, "coupon_used_share": -0.5},
        },
        [*TX, "coupon_burned", "coupon_used_share"],
    )
    names = name_segments(z)
    assert names.at[0, "name"] == "At risk" and names.at[1, "name"] == "Premium customers"
    assert "Coupon campaign: a time-limited win-back coupon" in names.at[0, "action"]
    assert "likely to work" in names.at[0, "action"]
    assert "Coupon campaign: no percentage coupons" in names.at[1, "action"]
    assert "rarely use coupons" in names.at[1, "action"]
    assert names.at[0, "dim_coupon"] == pytest.approx(0.7)


def test_overrides_by_number_and_by_automatic_name() -> None:
    z = _z({"lapsed": {"recency_days": 1.2, "monetary": 0.3}, "new": {"tenure_days": -1.4}}, TX)
    names = name_segments(z)
    unmatched = apply_overrides(
        names, {"At risk": {"name": "Win back"}, "1": {"action": "Say hello."}, "7": {"name": "X"}}
    )
    assert unmatched == ["7"]
    assert names.at[0, "name"] == "Win back" and "automatic name: At risk" in names.at[0, "earned_by"]
    assert names.at[1, "name"] == "New customers" and names.at[1, "action"] == "Say hello."
    with pytest.raises(ConfigError, match="same name"):
        apply_overrides(name_segments(z), {"0": {"name": "New customers"}})


def test_profile_segments_figures_and_config_overrides() -> None:
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(6)],
            "recency_days": [1.0, 2.0, 3.0, 200.0, 210.0, 220.0],
            "frequency": [10.0, 12.0, 14.0, 1.0, 2.0, 1.0],
            "monetary": [100.0, 200.0, 300.0, 10.0, 20.0, 30.0],
        }
    )
    labels = np.array([0, 0, 0, 1, 1, 1])
    cfg = load_config(None, {"profile.names": {"0": {"name": "Best"}, "Ghosts": {"name": "Nobody"}}})
    overrides = {k: v.model_dump(exclude_none=True) for k, v in cfg.profile.names.items()}
    notes: list[str] = []
    prof = profile_segments(frame, labels, ["recency_days", "frequency", "monetary"], overrides, notes=notes)
    p = prof.set_index("segment")
    assert p.at[0, "size"] == 3 and p.at[0, "share_customers"] == 0.5
    assert p.at[0, "share_revenue"] == pytest.approx(600 / 660)
    assert p.at[0, "mean_frequency"] == 12 and p.at[1, "median_recency_days"] == 210
    # z of the segment mean: two equal halves of a standardised feature sit at ±(half gap / sd)
    f = frame["frequency"].to_numpy()
    assert p.at[0, "z_frequency"] == pytest.approx((12 - f.mean()) / f.std())
    assert p.at[0, "name"] == "Best" and p.at[1, "name"] == "Hibernating"
    assert p.at[1, "dim_recency"] > 0.5 and p.at[1, "dim_value"] < 0
    assert len(notes) == 1 and "'Ghosts'" in notes[0] and "0 'Best'" in notes[0]


def test_config_validates_names_and_documents_the_rules() -> None:
    with pytest.raises(ConfigError, match=r"profile\.names"):
        load_config(None, {"profile.names": {"0": {"nmae": "typo"}}})
    with pytest.raises(ConfigError, match="rule_depth"):
        load_config(None, {"profile.rule_depth": 5})
    text = naming_rules_markdown()
    for rule in NAMING_RULES:
        assert f"| {rule.name} | {rule.describe()} |" in text
    purposes = " ".join(r.purpose for r in NAMING_RULES)
    for kind in ("loyalty", "reactivation", "cross-sell", "discounts", "UX tests"):
        assert kind in purposes


def test_method_doc_shows_the_current_rules() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "method.md").read_text(encoding="utf-8")
    assert naming_rules_markdown() in doc, "docs/method.md is stale: paste naming_rules_markdown() output"


def test_names_the_algorithm_gave_are_kept_and_noise_is_unassigned() -> None:
    z = _z(
        {
            "noise": {"recency_days": 1.5, "monetary": 0.5},
            "rfm_top": {"monetary": 1.5, "recency_days": -1.2},
            "lapsed": {"recency_days": 1.2, "monetary": 0.4},
            "other": {"monetary": 1.4, "recency_days": -1.0},
        },
        TX,
    )
    z.index = [-1, 0, 1, 2]
    names = name_segments(z, given={0: "Champions", 1: "At risk", 7: "Nowhere"})
    assert names.loc[-1, "name"] == "unassigned" and "unassigned" in names.loc[-1, "action"]
    assert names.loc[0, "name"] == "Champions" and names.loc[0, "action"] == NAMING_RULES[0].action
    assert names.loc[0, "earned_by"] == "named by the segmentation algorithm"
    assert names.loc[1, "name"] == "At risk" and "Reactivation" in names.loc[1, "action"]
    # the rules still name the rest; a given name is not handed out twice
    assert names.loc[2, "name"] == "Premium customers" and names["name"].is_unique
