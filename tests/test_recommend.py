"""Recommendation building blocks on hand-made data: interactions, the top-n engine against brute force,
popularity, trending, segment top (buyers, lift), own history, re-buy policies, association rules, bundles and
business filters — every expected value worked out by hand."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from shopseg.backends import DuckDBBackend
from shopseg.errors import ConfigError, DataError, NotFittedError
from shopseg.recommend import (
    Cooccurrence,
    Interactions,
    ItemFilter,
    OwnHistory,
    Popularity,
    SegmentTop,
    Trending,
    allowed_products,
    bundles,
)
from shopseg.recommend.base import Scores, _top_n

D0 = datetime(2011, 1, 1)


def lines(rows: list[tuple[str, str, str, int]], quantity: float = 1.0) -> pd.DataFrame:
    """(customer, order, product, day) → order lines."""
    return pd.DataFrame(
        [
            {"customer_id": c, "order_id": o, "product_id": p, "ts": D0 + timedelta(days=d), "quantity": quantity}
            for c, o, p, d in rows
        ]
    )


def test_interactions_from_lines_aggregate_orders_by_hand() -> None:
    f = lines(
        [
            ("c1", "o1", "p1", 0),
            ("c1", "o1", "p1", 0),  # a second line of the same product in the same order: one order
            ("c1", "o2", "p1", 4),
            ("c1", "o2", "p2", 4),
            ("c2", "o3", "p2", 9),
            ("c2", "o9", "p3", 20),  # after as_of: ignored
        ]
    )
    x = Interactions.from_lines(f, as_of=D0 + timedelta(days=10), half_life_days=10)
    assert list(x.customers) == ["c1", "c2"] and list(x.products) == ["p1", "p2"]
    frame = x.to_frame().set_index(["customer_id", "product_id"])
    assert frame.loc[("c1", "p1"), "n_orders"] == 2
    assert frame.loc[("c1", "p1"), "quantity"] == 3
    assert frame.loc[("c1", "p1"), "recency_days"] == pytest.approx(6)
    # each order counts 0.5 ** (age / 10): ages 10 and 6 days
    assert frame.loc[("c1", "p1"), "weight"] == pytest.approx(0.5 + 0.5**0.6)
    assert frame.loc[("c2", "p2"), "recency_days"] == pytest.approx(1)
    assert x.orders.nnz == 3
    rows = x.rows(np.array([1, -1, 0]))
    assert list(rows.customers) == ["c2", "", "c1"]
    assert np.diff(rows.orders.indptr).tolist() == [1, 0, 2]
    assert rows.weight.tolist() == pytest.approx([0.5**0.1, 0.5 + 0.5**0.6, 0.5**0.6])


def test_interactions_reject_inconsistent_arrays() -> None:
    with pytest.raises(DataError, match="quantity"):
        Interactions(
            customers=np.array(["a"]),
            products=np.array(["p"]),
            orders=sp.csr_matrix(np.ones((1, 1))),
            quantity=np.zeros(2),
            recency_days=np.zeros(1),
            weight=np.zeros(1),
            as_of=D0,
        )
    with pytest.raises(DataError, match="customer_id"):
        Interactions.from_lines(pd.DataFrame({"product_id": ["p"], "ts": [D0]}))


def _brute(
    scores: Scores, n_rows: int, n_cols: int, n: int, allowed: np.ndarray | None, exclude: sp.csr_matrix | None
) -> tuple[np.ndarray, np.ndarray]:
    full = np.zeros((n_rows, n_cols))
    valid = np.zeros((n_rows, n_cols), dtype=bool)
    if scores.prior is not None:
        grp = scores.group if scores.group is not None else np.zeros(n_rows, dtype=np.int64)
        full += scores.prior[grp]
        valid[:] = True
    if scores.dense is not None:
        full += scores.dense
        valid[:] = True
    if scores.personal is not None:
        p = scores.personal.toarray()
        full += p
        valid |= scores.personal.toarray() != 0
    if allowed is not None:
        valid[:, ~allowed] = False
    if exclude is not None:
        valid &= exclude.toarray() == 0
    cols = np.full((n_rows, n), -1)
    vals = np.full((n_rows, n), np.nan)
    for r in range(n_rows):
        cand = [(-full[r, c], c) for c in range(n_cols) if valid[r, c]]
        cand.sort()
        for j, (v, c) in enumerate(cand[:n]):
            cols[r, j], vals[r, j] = c, -v
    return cols, vals


@pytest.mark.parametrize("case", range(40))
def test_top_n_engine_equals_a_full_sort(case: int) -> None:
    rng = np.random.default_rng(case)
    n_rows, n_cols = int(rng.integers(1, 30)), int(rng.integers(2, 60))
    n = int(rng.integers(1, 12))
    kind = case % 4
    # few distinct values, so ties are everywhere (they go to the smaller column)
    density = [0.05, 0.3, 0.6, 0.1][kind]
    personal = sp.random(n_rows, n_cols, density=density, random_state=case, format="csr")
    personal.data = rng.integers(1, 4, size=personal.nnz).astype(float)
    if case % 5 == 0:
        # entries stored out of column order, as sparse products leave them
        for r in range(n_rows):
            a, b = personal.indptr[r], personal.indptr[r + 1]
            order = rng.permutation(b - a)
            personal.indices[a:b] = personal.indices[a:b][order]
            personal.data[a:b] = personal.data[a:b][order]
        personal.has_sorted_indices = False
    s = Scores(personal=personal)
    if kind in (1, 3):
        groups = int(rng.integers(1, 4))
        s.prior = rng.integers(0, 3, size=(groups, n_cols)).astype(float)
        s.group = rng.integers(0, groups, size=n_rows)
    if kind == 2:
        s.dense = rng.integers(0, 3, size=(n_rows, n_cols)).astype(float)
    allowed = rng.random(n_cols) > 0.2 if case % 3 == 0 else None
    exclude = sp.random(n_rows, n_cols, density=0.3, random_state=case + 100, format="csr") if case % 2 else None
    if exclude is not None:
        exclude.data[:] = 1.0
    got_c, got_v = _top_n(s, n_rows, n_cols, n, allowed, exclude)
    want_c, want_v = _brute(s, n_rows, n_cols, n, allowed, exclude)
    np.testing.assert_array_equal(got_c, want_c)
    np.testing.assert_allclose(got_v, want_v)


def _shop(half_life_days: float = 60.0) -> Interactions:
    # milk: bought twice by everyone (often re-bought); tv: once by c1..c4; bread: c1, c2 (segment 0);
    # jam: c4, c5 recently (segment 1); soap: c3 long ago
    rows = []
    o = 0
    for c in ("c1", "c2", "c3", "c4", "c5", "c6"):
        rows += [(c, f"o{(o := o + 1)}", "milk", 1), (c, f"o{(o := o + 1)}", "milk", 5)]
    for c in ("c1", "c2", "c3", "c4"):
        rows.append((c, f"o{(o := o + 1)}", "tv", 2))
    rows += [("c1", "o90", "bread", 3), ("c2", "o91", "bread", 3), ("c3", "o92", "soap", 0)]
    rows += [("c4", "o93", "jam", 58), ("c5", "o94", "jam", 59)]
    seg = {"c1": 0, "c2": 0, "c3": 0, "c4": 1, "c5": 1, "c6": 1}
    return Interactions.from_lines(
        lines(rows), as_of=D0 + timedelta(days=60), segments=seg, half_life_days=half_life_days
    )


@pytest.fixture
def shop() -> Interactions:
    return _shop()


def _lists(model: object, ids: list[str], n: int = 10, **kw: object) -> dict[str, list[str]]:
    got, _ = model.recommend(ids, n, **kw)  # type: ignore[attr-defined]
    return {c: [p for p in row if p] for c, row in zip(ids, got, strict=True)}


def test_popularity_by_buyers_with_rebuy_policies(shop: Interactions) -> None:
    pop = Popularity(rebuy_threshold=0.5).fit(shop)
    # buyers: milk 6, tv 4, bread 2, jam 2, soap 1 (ties by product id: bread < jam)
    ids, scores = pop.recommend(["zz"], 5)
    assert list(ids[0]) == ["milk", "tv", "bread", "jam", "soap"]
    assert scores[0].tolist() == pytest.approx([1.0, 4 / 6, 2 / 6, 2 / 6, 1 / 6])
    # only milk is re-bought by at least half its buyers (and has 5+ buyers)
    assert pop.rebuyable_.tolist() == [False, False, True, False, False]  # bread jam milk soap tv
    often = _lists(pop, ["c1"])
    assert often["c1"] == ["milk", "jam", "soap"]  # tv and bread were bought once, milk is often re-bought
    assert _lists(pop, ["c1"], rebuy="never")["c1"] == ["jam", "soap"]
    assert _lists(pop, ["c1"], rebuy="always")["c1"] == ["milk", "tv", "bread", "jam", "soap"]
    # the default threshold is the median share of re-buyers over products with 5+ buyers: only milk (1.0)
    assert Popularity().fit(shop).rebuy_threshold_ == pytest.approx(1.0)


def test_often_rebought_rule_with_personal_scores(shop: Interactions) -> None:
    # own history with rebuy="often": only the customer's products that are often re-bought (milk), and the
    # scores stay attached to the right products
    own = OwnHistory(rebuy="often", rebuy_threshold=0.5).fit(shop)
    ids, scores = own.recommend(["c1", "c4"], 3)
    assert [list(r) for r in ids] == [["milk", "", ""], ["milk", "", ""]]
    assert scores[0][0] == pytest.approx(2 + 0.5 / (1 + 55))  # 2 orders, the last one 55 days ago
    always = _lists(OwnHistory(rebuy_threshold=0.5).fit(shop), ["c1"])["c1"]
    assert always == ["milk", "bread", "tv"]


def test_trending_counts_buyers_in_the_window(shop: Interactions) -> None:
    t = Trending(window_days=5).fit(shop)
    # only jam was bought in the last 5 days (days 58, 59 of 60), by 2 of the 2 recently active customers
    ids, scores = t.recommend(["new"], 2)
    assert ids[0][0] == "jam" and scores[0][0] == pytest.approx(1.0, abs=1e-5)
    # ties among the others go to overall buyers: milk (6) before tv (4)
    assert ids[0][1] == "milk"
    with pytest.raises(ConfigError, match="window_days"):
        Trending(window_days=0).fit(shop)


def test_segment_top_by_buyers_and_by_lift(shop: Interactions) -> None:
    by_buyers = SegmentTop(rebuy="always").fit(shop)
    assert _lists(by_buyers, ["c1"], 3)["c1"] == ["milk", "tv", "bread"]
    top = by_buyers.top_products(3).set_index(["segment", "product_id"])
    # bread: 2 of segment 0's 3 customers, 2 of all 6 → lift (2/3) / (2/6) = 2
    assert top.loc[(0, "bread"), "buyers"] == 2
    assert top.loc[(0, "bread"), "lift"] == pytest.approx(2.0)
    # the segment comes from the history; an unknown segment gets the population's list
    assert _lists(by_buyers, ["nobody"], 2)["nobody"] == ["milk", "tv"]
    assert _lists(by_buyers, ["nobody"], 2, segments=[1])["nobody"] == ["milk", "jam"]
    by_lift = SegmentTop("lift", min_buyers=2, rebuy="always").fit(shop)
    # segment 1 (c4..c6): jam 2/3 vs 2/6 → lift 2; milk lift 1; tv 1/3 vs 4/6 → 0.5 (2+ buyers needed: tv has 1)
    assert _lists(by_lift, ["c5"], 2)["c5"] == ["jam", "milk"]


def test_own_history_by_orders_then_recency(shop: Interactions) -> None:
    own = OwnHistory().fit(shop)
    # c4: milk 2 orders, then jam (day 58) before tv (day 2), both 1 order
    assert _lists(own, ["c4"])["c4"] == ["milk", "jam", "tv"]
    assert _lists(own, ["unknown"])["unknown"] == []
    # recency-weighted orders: with a 60-day half-life milk's two orders (59 and 55 days old: 0.51 + 0.53) beat
    # jam's one (2 days: 0.98); with a 10-day half-life jam (0.87) beats milk (0.017 + 0.022)
    assert _lists(OwnHistory("weighted").fit(shop), ["c4"])["c4"][:2] == ["milk", "jam"]
    assert _lists(OwnHistory("weighted").fit(_shop(10.0)), ["c4"])["c4"][:2] == ["jam", "milk"]
    with pytest.raises(NotFittedError):
        OwnHistory().recommend(["c1"])


def test_association_rules_by_hand() -> None:
    f = lines(
        [
            ("A", "1", "x", 0),
            ("A", "2", "y", 1),
            ("B", "3", "x", 0),
            ("B", "3", "y", 0),
            ("C", "4", "x", 0),
            ("C", "5", "z", 2),
            ("D", "6", "y", 0),
            ("E", "7", "z", 0),
        ]
    )
    x = Interactions.from_lines(f, as_of=D0 + timedelta(days=10))
    rules = Cooccurrence(min_customers=1).fit(x).rules().set_index(["antecedent", "consequent"])
    # 5 customers; buyers x 3, y 3, z 2; x&y 2 customers, x&z 1, y&z 0
    assert rules.loc[("x", "y"), "customers"] == 2
    assert rules.loc[("x", "y"), "support"] == pytest.approx(2 / 5)
    assert rules.loc[("x", "y"), "confidence"] == pytest.approx(2 / 3)
    assert rules.loc[("x", "y"), "lift"] == pytest.approx((2 / 3) / (3 / 5))
    assert rules.loc[("z", "x"), "confidence"] == pytest.approx(1 / 2)
    assert rules.loc[("x", "z"), "lift"] == pytest.approx((1 / 3) / (2 / 5))
    assert ("y", "z") not in rules.index and len(rules) == 4
    strict = Cooccurrence(min_customers=2).fit(x)
    assert set(strict.rules()["antecedent"] + strict.rules()["consequent"]) == {"xy", "yx"}
    # D bought y: x follows (confidence 2/3); z has no rule with y
    ids, scores = strict.recommend(["D"], 3, rebuy="never")
    assert [p for p in ids[0] if p] == ["x"] and scores[0][0] == pytest.approx(2 / 3)
    sim, _ = strict.similar_items(["x", "nope"], 2)
    assert list(sim[0]) == ["y", ""] and list(sim[1]) == ["", ""]


def test_bundles_by_hand(backend: DuckDBBackend) -> None:
    rows = [("o1", "a"), ("o1", "b"), ("o2", "a"), ("o2", "b"), ("o3", "a"), ("o3", "c"), ("o4", "b")]
    rows += [("o5", p) for p in ("a", "b", "c", "d")]  # a restock of 4 products: not a basket
    frame = pd.DataFrame(rows, columns=["order_id", "product_id"])
    backend.create_table("t", frame)
    b = bundles(backend, table="t", min_orders=1, max_order_items=3).set_index(["product_a", "product_b"])
    # 4 baskets; a in 3, b in 3, c in 1; a&b in 2, a&c in 1
    assert b.loc[("a", "b"), "orders"] == 2
    assert b.loc[("a", "b"), "support"] == pytest.approx(0.5)
    assert b.loc[("a", "b"), "confidence_a_b"] == pytest.approx(2 / 3)
    assert b.loc[("a", "b"), "lift"] == pytest.approx(2 * 4 / (3 * 3))
    assert b.loc[("a", "c"), "confidence_b_a"] == pytest.approx(1.0)
    assert b.loc[("a", "c"), "lift"] == pytest.approx(4 / 3)
    assert list(b.index) == [("a", "c"), ("a", "b")]  # by lift
    assert list(bundles(backend, table="t", min_orders=2, max_order_items=3)["product_b"]) == ["b"]
    with pytest.raises(ConfigError):
        bundles(backend, table="t", max_order_items=1)


def test_business_filters(backend: DuckDBBackend, tmp_path: Path) -> None:
    t = pd.DataFrame(
        {
            "product_id": ["POST", "GIFT_10", "cheap", "dear", "old", "toy", "ok"],
            "category": ["fee", "gift", "home", "home", "home", "toys", "home"],
            "unit_price": [5.0, 10.0, 0.2, 500.0, 3.0, 3.0, 3.0],
            "ts": [D0 + timedelta(days=50)] * 4 + [D0, D0 + timedelta(days=50), D0 + timedelta(days=50)],
        }
    )
    backend.create_table("transactions", t)
    products = np.array(sorted(t["product_id"]))
    rules = ItemFilter(
        exclude_codes=["post"],
        exclude_patterns=["gift_%"],
        exclude_categories=["Toys"],
        min_price=1.0,
        max_price=100.0,
        active_days=30,
    )
    mask, removed = allowed_products(backend, products, rules, as_of=D0 + timedelta(days=60))
    assert dict(zip(products, mask, strict=True)) == {
        "GIFT_10": False,
        "POST": False,
        "cheap": False,
        "dear": False,
        "ok": True,
        "old": False,
        "toy": False,
    }
    assert removed == {
        "non_product": 2,
        "not_sold_recently": 1,
        "excluded_category": 1,
        "below_min_price": 1,
        "above_max_price": 1,
    }
    cat = tmp_path / "catalogue.csv"
    cat.write_text("product_id\nok\ntoy\n", encoding="utf-8")
    mask, removed = allowed_products(backend, products, ItemFilter(catalogue=cat))
    assert products[mask].tolist() == ["ok", "toy"] and removed == {"not_in_catalogue": 5}
    with pytest.raises(ConfigError, match="min_price"):
        ItemFilter(min_price=5, max_price=1)
    with pytest.raises(ConfigError, match="category"):
        allowed_products(backend, products, ItemFilter(exclude_categories=["x"]), has_category=False)


def test_lists_for_every_customer_equal_the_model(backend: DuckDBBackend) -> None:
    """The run's lists (read in batches, or only the purchases of candidate products for segment-only models)
    equal the model's own recommendations, also for a customer who bought almost every candidate."""
    from shopseg.config import RecommendConfig
    from shopseg.recommend import run_recommendations
    from shopseg.recommend.methods import make_recommender
    from shopseg.recommend.sql import build_interactions

    rng = np.random.default_rng(3)
    rows = []
    for c in range(40):
        for p in rng.choice(28, size=int(rng.integers(1, 6)), replace=False):
            rows.append((f"c{c:02d}", f"o{c}-{p}", f"p{p:02d}", int(rng.integers(0, 50))))
    # p28 and p29 are the least bought; a heavy buyer of the 28 others exhausts the popular candidates, so its
    # list must come from its whole history and every product
    rows += [("c00", "x1", "p28", 5), ("c01", "x2", "p29", 5)]
    rows += [("heavy", f"h{p}", f"p{p:02d}", 1) for p in range(28)]
    f = lines(rows)
    f["product_name"] = f["product_id"].str.upper()
    f["unit_price"] = 1.0
    backend.create_table("transactions", f)
    seg = pd.DataFrame({"customer_id": sorted(set(f["customer_id"]))})
    seg["segment"] = [i % 3 for i in range(len(seg))]
    backend.create_table("segments", seg)
    as_of = D0 + timedelta(days=60)
    build_interactions(backend, as_of)
    x = Interactions.from_lines(f, as_of, segments=dict(zip(seg["customer_id"], seg["segment"], strict=True)))
    assert {"p28", "p29"} <= set(x.products)
    for method in ("popularity", "segment_top", "own_history", "item_knn"):
        rc = RecommendConfig(method=method, rebuy="default" if method == "own_history" else "never", n=3)
        run_recommendations(backend, rc=rc, as_of=as_of, seed=0, threads=1)
        got = backend.df("SELECT customer_id, product_id FROM recommendations ORDER BY customer_id, rank")
        ids, _ = make_recommender(method, rc, threads=1, seed=0).fit(x).recommend(x.customers, 3, segments=x.segments)
        want = {c: [p for p in r if p] for c, r in zip(x.customers, ids, strict=True)}
        mine = {c: list(g["product_id"]) for c, g in got.groupby("customer_id")}
        assert mine == {c: v for c, v in want.items() if v}, method
        if method == "popularity":
            assert set(mine["heavy"]) == {"p28", "p29"}  # the only products it never bought


def test_segment_banner_products_by_hand_without_filtered_products(backend: DuckDBBackend) -> None:
    """Per segment, the top products by buyers and by lift, ranked again once the business filters removed
    a product; stored as ``segment_products`` (both rankings, with the segment's name)."""
    from shopseg.config import RecommendConfig
    from shopseg.recommend import run_recommendations
    from shopseg.recommend.sql import build_interactions

    bought = {"c0": ["p1", "p2", "p3"], "c1": ["p1", "p2"], "c2": ["p1"], "d0": ["p2", "p4"], "d1": ["p4"]}
    f = lines([(c, f"{c}-{p}", p, 1) for c, ps in bought.items() for p in ps])
    f["product_name"] = f["product_id"].str.upper()
    f["unit_price"] = 1.0
    backend.create_table("transactions", f)
    seg = pd.DataFrame({"customer_id": list(bought), "segment": [0, 0, 0, 1, 1]})
    seg["segment_name"] = np.where(seg["segment"] == 0, "Loyal", "New")
    backend.create_table("segments", seg)
    as_of = D0 + timedelta(days=10)
    build_interactions(backend, as_of)
    rc = RecommendConfig(method="popularity", exclude_products=["p1"], n=2, segment_top_n=5)
    out = run_recommendations(backend, rc=rc, as_of=as_of, seed=0, threads=1)
    assert "p1" not in set(backend.df("SELECT product_id FROM recommendations")["product_id"])
    got = backend.df("SELECT * FROM segment_products ORDER BY segment, rank_by, rank")
    assert list(got.columns) == [
        "segment",
        "segment_name",
        "rank_by",
        "rank",
        "product_id",
        "product_name",
        "buyers",
        "buyer_share",
        "lift",
    ]
    rows = [(r.segment, r.segment_name, r.rank_by, r.rank, r.product_id, r.buyers) for r in got.itertuples()]
    # segment 0 (3 customers): p1 (3 buyers, filtered out), p2 (2), p3 (1); segment 1: p4 (2), p2 (1).
    # lift = segment share / everyone's (5 customers): p2 (2/3)/(3/5) = 1.11, p3 (1/3)/(1/5) = 1.67,
    # p4 (2/2)/(2/5) = 2.5, p2 in segment 1 (1/2)/(3/5) = 0.83
    assert rows == [
        (0, "Loyal", "buyers", 1, "p2", 2),
        (0, "Loyal", "buyers", 2, "p3", 1),
        (0, "Loyal", "lift", 1, "p3", 1),
        (0, "Loyal", "lift", 2, "p2", 2),
        (1, "New", "buyers", 1, "p4", 2),
        (1, "New", "buyers", 2, "p2", 1),
        (1, "New", "lift", 1, "p4", 2),
        (1, "New", "lift", 2, "p2", 1),
    ]
    assert got["lift"].round(2).tolist() == [1.11, 1.67, 1.67, 1.11, 2.5, 0.83, 2.5, 0.83]
    assert got["product_name"].tolist() == got["product_id"].str.upper().tolist()
    assert out.segment_products is not None and out.segment_products["product_id"].tolist() == ["p2", "p3", "p4", "p2"]
    lift = backend.df("SELECT segment, rank, product_id FROM segment_products_by_lift ORDER BY segment, rank")
    assert lift.values.tolist() == [[0, 1, "p3"], [0, 2, "p2"], [1, 1, "p4"], [1, 2, "p2"]]
