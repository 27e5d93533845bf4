"""Evaluation: metric values computed by hand, the time-split protocol, and the issue's targets — on the
bundled Online Retail sample (always) and on the full Online Retail file (slow; skipped without it)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopseg.backends import DuckDBBackend
from shopseg.clean import CleanResult
from shopseg.errors import ConfigError
from shopseg.ingest import IngestResult
from shopseg.recommend import (
    Blend,
    Cooccurrence,
    Interactions,
    ItemKNN,
    OwnHistory,
    Popularity,
    Trending,
    evaluate,
    parse_metric,
    time_split,
)
from shopseg.recommend.evaluate import user_metrics

D0 = datetime(2011, 1, 1)


def test_user_metrics_by_hand() -> None:
    # list of 5: hits at ranks 1 and 3; the user bought 3 products
    hits = np.array([[True, False, True, False, False]])
    m = user_metrics(hits, np.array([3]), 5)
    assert m["precision"][0] == pytest.approx(2 / 5)
    assert m["recall"][0] == pytest.approx(2 / 3)
    assert m["hit_rate"][0] == 1.0
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg"][0] == pytest.approx((1 + 1 / math.log2(4)) / idcg)
    # precision at the hits: 1/1 and 2/3, over min(3, 5)
    assert m["map"][0] == pytest.approx((1 + 2 / 3) / 3)
    # k = 2: one hit at rank 1, ideal list of 2 hits
    m2 = user_metrics(hits, np.array([3]), 2)
    assert m2["ndcg"][0] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert m2["map"][0] == pytest.approx(1 / 2)
    # no hit at all
    m0 = user_metrics(np.zeros((1, 5), dtype=bool), np.array([1]), 5)
    assert all(v[0] == 0 for v in m0.values())


def _split() -> tuple[Interactions, pd.DataFrame]:
    rows = [("u1", "o1", "p1", 1), ("u1", "o2", "p1", 2), ("u1", "o2", "p2", 2), ("u2", "o3", "p2", 3)]
    rows += [("u2", "o3", "p3", 3), ("u3", "o4", "p1", 4)]
    # hold-out (days 10-19): u1 p1 and p3; u2 p2 and p4 (not sold before); u3 only p9 (new to the shop);
    # u4 has no history
    rows += [("u1", "o5", "p1", 12), ("u1", "o5", "p3", 12), ("u2", "o6", "p2", 15), ("u2", "o6", "p4", 15)]
    rows += [("u3", "o7", "p9", 11), ("u4", "o8", "p1", 11)]
    f = pd.DataFrame(
        [{"customer_id": c, "order_id": o, "product_id": p, "ts": D0 + timedelta(days=d)} for c, o, p, d in rows]
    )
    return time_split(f, holdout_days=10, as_of=D0 + timedelta(days=20), segments={"u1": 0, "u2": 1, "u3": 1})


def test_time_split_protocol() -> None:
    train, truth = _split()
    assert train.as_of == D0 + timedelta(days=10)
    assert list(train.customers) == ["u1", "u2", "u3"] and list(train.products) == ["p1", "p2", "p3"]
    assert sorted(map(tuple, truth.to_numpy())) == [
        ("u1", "p1"),
        ("u1", "p3"),
        ("u2", "p2"),
        ("u2", "p4"),
        ("u3", "p9"),
        ("u4", "p1"),
    ]


def test_evaluation_by_hand() -> None:
    train, truth = _split()
    ev = evaluate({"popularity": Popularity(rebuy="always").fit(train)}, train, truth, ks=(2, 10))
    # users: u1 (p1, p3) and u2 (p2; p4 is unknown to the training data); u3's p9 is new to the shop and u4
    # has no history. New items: only u1's p3 (u2 had bought p2)
    assert ev.users == {"all": 2, "new": 1}
    a = ev.tables["all"].set_index("method").loc["popularity"]
    # buyers: p1 2, p2 2, p3 1 → both lists start p1, p2: u1 hits at rank 1 (of 2 bought), u2 at rank 2 (of 1)
    assert a["precision@2"] == pytest.approx(0.5)
    assert a["recall@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert a["hit_rate@2"] == 1.0
    ndcg_u1 = 1 / (1 + 1 / math.log2(3))
    ndcg_u2 = 1 / math.log2(3)
    assert a["ndcg@2"] == pytest.approx((ndcg_u1 + ndcg_u2) / 2)
    assert a["map@2"] == pytest.approx((1 / 2 + (1 / 2) / 1) / 2)
    assert a["coverage@2"] == pytest.approx(2 / 3)
    assert a["novelty@2"] == pytest.approx(-math.log2(2 / 3))
    # at 10 every product is listed: u1 finds p1 and p3, u2 p2
    assert a["recall@10"] == pytest.approx(1.0) and a["precision@10"] == pytest.approx((2 / 10 + 1 / 10) / 2)
    n = ev.tables["new"].set_index("method").loc["popularity"]
    # u1 bought p1 and p2 before, so the list is [p3]: a hit at rank 1
    assert n["precision@2"] == pytest.approx(1 / 2) and n["recall@2"] == 1.0 and n["ndcg@2"] == 1.0
    assert n["coverage@2"] == pytest.approx(1 / 3) and n["novelty@2"] == pytest.approx(-math.log2(1 / 3))
    seg = ev.per_segment.set_index(["mode", "segment"])
    assert seg.loc[("all", 0), "precision@10"] == pytest.approx(0.2)
    assert seg.loc[("all", 1), "precision@10"] == pytest.approx(0.1)
    assert seg.loc[("all", 1), "users"] == 1
    assert ev.info["repurchase_share"] == pytest.approx(2 / 3)  # of u1 p1, u1 p3, u2 p2: two were bought before
    assert ev.best("recall@10") == "popularity"


def test_own_history_is_left_out_of_the_new_items_table() -> None:
    train, truth = _split()
    ev = evaluate({"own": OwnHistory().fit(train), "pop": Popularity().fit(train)}, train, truth, ks=(10,))
    assert list(ev.tables["all"]["method"]) == ["own", "pop"]
    assert list(ev.tables["new"]["method"]) == ["pop"]


def test_metric_names_are_checked() -> None:
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    for bad in ("ndcg", "ndcg@7", "auc@10"):
        with pytest.raises(ConfigError, match="metric"):
            parse_metric(bad)


def _protocol(lines: pd.DataFrame, workers: int = 1) -> dict[str, pd.DataFrame]:
    train, truth = time_split(lines, holdout_days=30)
    models = {
        "popularity": Popularity(),
        "trending": Trending(),
        "own_history": OwnHistory(),
        "cooccurrence": Cooccurrence(),
        "item_knn": ItemKNN(),
        "blend": Blend(),
    }
    for m in models.values():
        m.fit(train)
    ev = evaluate(models, train, truth, ks=(10,), workers=workers)
    return {mode: t.set_index("method") for mode, t in ev.tables.items()} | {
        "users": pd.DataFrame([ev.users]),
        "per_segment": ev.per_segment,
    }


def _clean_lines(
    ingest_clean: Callable[..., tuple[IngestResult, CleanResult]], backend: DuckDBBackend, path: Path
) -> pd.DataFrame:
    ingest_clean(path)
    return backend.df("SELECT customer_id, order_id, product_id, quantity, ts FROM transactions")


@pytest.mark.slow
def test_protocol_on_the_bundled_sample(
    ingest_clean: Callable[..., tuple[IngestResult, CleanResult]], backend: DuckDBBackend, sample_csv: Path
) -> None:
    """The issue's protocol on the 600-customer sample (figures measured on it; they move if the methods do)."""
    lines = _clean_lines(ingest_clean, backend, sample_csv)
    r = _protocol(lines)
    assert r["users"].iloc[0].to_dict() == {"all": 197, "new": 178}
    # models scored on threads: the same tables, row for row
    threaded = _protocol(lines, workers=3)
    for key in ("all", "new", "users", "per_segment"):
        pd.testing.assert_frame_equal(threaded[key], r[key])
    a, n = r["all"]["recall@10"], r["new"]["recall@10"]
    # measured: blend 0.214, own history 0.210, item-kNN 0.130, popularity 0.036
    assert a["blend"] >= 0.20 and a["blend"] > a["own_history"] > a["item_knn"] > a["popularity"]
    # measured: blend 0.075, item-kNN 0.057, trending 0.045, popularity 0.021
    assert n["blend"] >= 0.065 and n["blend"] > n["item_knn"] > n["popularity"]


@pytest.mark.slow
def test_protocol_on_online_retail_meets_the_targets(
    ingest_clean: Callable[..., tuple[IngestResult, CleanResult]], backend: DuckDBBackend, shared_data: Path
) -> None:
    """Issue 5's targets: all-items recall@10 >= 0.18, new-items recall@10 >= 0.06 (last 30 days held out)."""
    path = shared_data / "online_retail" / "online_retail.parquet"
    if not path.is_file():
        pytest.skip(f"Online Retail not found at {path}")
    r = _protocol(_clean_lines(ingest_clean, backend, path))
    users = r["users"].iloc[0].to_dict()
    assert 1300 <= users["all"] <= 1450 and 1200 <= users["new"] <= 1350  # the issue: about 1,380 and 1,270
    a, n = r["all"]["recall@10"], r["new"]["recall@10"]
    assert 0.155 <= a["own_history"] <= 0.175  # the baseline the issue measured (0.158)
    assert a["blend"] >= 0.18 and a["blend"] > a["own_history"]
    assert n["blend"] >= 0.06 and n["blend"] > n["item_knn"]
    assert 0.045 <= n["item_knn"] <= 0.065  # BM25 item-kNN: 0.053 in the issue
