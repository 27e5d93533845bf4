"""The scoring API: every route and error path in-process, the OpenAPI document (drift + schemathesis), the real
server on loopback, and concurrent use of one run."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from service_support import free_port, shared_run, stop, wait_http
from shopseg.errors import ConfigError, DataError, NotFoundError, SchemaError, ShopsegError
from shopseg.serve.api import ScoreBatcher, _listen, create_app, default_workers, openapi_document, serve
from shopseg.serve.rundir import RunData, ScoreJob, ScoreResult, json_bytes

with warnings.catch_warnings():
    # Starlette asks for the 'httpx2' package for its test client and warns once, at import, when it finds
    # httpx instead; the client works the same. Only this import is exempt from warnings-as-errors.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_run(tmp_path_factory)


@pytest.fixture(scope="module")
def data(run_dir: Path) -> Iterator[RunData]:
    d = RunData.open(run_dir)
    yield d
    d.close()


@pytest.fixture(scope="module")
def client(data: RunData) -> Iterator[TestClient]:
    with TestClient(create_app(data, api_key=KEY), headers={"X-API-Key": KEY}) as c:
        yield c


@pytest.fixture(scope="module")
def crm(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "segments.parquet")


@pytest.fixture(scope="module")
def recs(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "recommendations.parquet")


@pytest.fixture(scope="module")
def lines(run_dir: Path) -> pd.DataFrame:
    """The run's clean order lines, read independently of the API."""
    con = duckdb.connect(str(run_dir / "shopseg.duckdb"), read_only=True)
    try:
        return con.execute("SELECT customer_id, order_id, product_id, ts FROM transactions").df()
    finally:
        con.close()


def _is_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    err: dict[str, Any] = body["error"]
    return err


# ------------------------------------------------------------------------------------------------ auth

ROUTES = [
    ("GET", "/segments", None),
    ("GET", "/segments/0", None),
    ("GET", "/customers/12347", None),
    ("GET", "/items/85123A/similar", None),
    ("POST", "/score", {"orders": [{"customer_id": "x", "ts": "2011-01-01", "unit_price": 1}]}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_data_route_needs_the_key(data: RunData, method: str, path: str, body: Any) -> None:
    with TestClient(create_app(data, api_key=KEY)) as c:
        missing = c.request(method, path, json=body)
        err = _is_error(missing, 401, "unauthorized")
        assert "X-API-Key" in err["message"]
        assert missing.headers["www-authenticate"] == "ApiKey"
        _is_error(c.request(method, path, json=body, headers={"X-API-Key": KEY + "x"}), 401, "unauthorized")
        _is_error(c.request(method, path, json=body, headers={"X-API-Key": ""}), 401, "unauthorized")
        ok = c.request(method, path, json=body, headers={"X-API-Key": KEY})
        assert ok.status_code != 401
        # /health and the docs stay open for probes
        assert c.get("/health").status_code == 200
        assert c.get("/openapi.json").status_code == 200


def test_without_a_key_configured_no_header_is_needed(data: RunData) -> None:
    with TestClient(create_app(data)) as c:
        assert c.get("/segments").status_code == 200


# ------------------------------------------------------------------------------------------------ routes


def test_health_names_the_run(client: TestClient, run_dir: Path, crm: pd.DataFrame) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok"
    assert h["run_id"] == hashlib.sha256((run_dir / "manifest.json").read_bytes()).hexdigest()[:16]
    assert h["customers"] == len(crm)
    assert h["segments"] == crm["segment"].nunique()


def test_segments_reconcile_with_the_crm_file(client: TestClient, crm: pd.DataFrame) -> None:
    body = client.get("/segments").json()
    sizes = crm.groupby("segment").size()
    assert [s["segment"] for s in body["segments"]] == sorted(sizes.index.tolist())
    for s in body["segments"]:
        assert s["size"] == sizes[s["segment"]]
        assert s["share_customers"] == pytest.approx(sizes[s["segment"]] / len(crm))
        assert s["name"] == crm.loc[crm["segment"] == s["segment"], "segment_name"].iloc[0]
    revenue = crm.groupby("segment")["monetary"].sum() / crm["monetary"].sum()
    for s in body["segments"]:
        assert s["share_revenue"] == pytest.approx(revenue[s["segment"]])


def test_segment_detail_profile_and_products(
    client: TestClient, run_dir: Path, crm: pd.DataFrame, lines: pd.DataFrame
) -> None:
    seg = int(crm["segment"].iloc[0])
    d = client.get(f"/segments/{seg}?n=5").json()
    members = crm[crm["segment"] == seg]
    assert d["profile"]["recency_days"]["mean"] == pytest.approx(members["recency_days"].mean())
    assert d["profile"]["frequency"]["median"] == pytest.approx(members["frequency"].median())
    rules_file = run_dir / "segment_rules.json"
    if rules_file.is_file():  # the run's readable rules, as written for rule-based CRMs
        entry = [r for r in json.loads(rules_file.read_text())["segments"] if r["segment"] == seg]
        assert d["rules"] == entry[0]
    assert len(d["top_products"]) == 5
    # buyers of each top product among the segment, counted here from the clean lines
    pairs = lines.dropna(subset=["product_id"]).drop_duplicates(["customer_id", "product_id"])
    pairs = pairs[pairs["customer_id"].isin(members["customer_id"])]
    counts = pairs.groupby("product_id").size()
    ranked = counts.reset_index(name="n").sort_values(["n", "product_id"], ascending=[False, True])
    assert [p["product_id"] for p in d["top_products"]] == ranked["product_id"].head(5).tolist()
    for p in d["top_products"]:
        assert p["buyers"] == counts[p["product_id"]]
        assert p["buyer_share"] == pytest.approx(counts[p["product_id"]] / pairs["customer_id"].nunique())
    # banner products: at least 5% of the segment's buyers (and 3) each, ordered by lift
    floor = max(3, 0.05 * pairs["customer_id"].nunique())
    lifts = [p["lift"] for p in d["banner_products"]]
    assert d["banner_products"] and lifts == sorted(lifts, reverse=True)
    assert all(p["buyers"] >= floor for p in d["banner_products"])


def test_banner_products_leave_out_what_the_business_filters_exclude(run_dir: Path, tmp_path: Path) -> None:
    """Products the run's filters excluded (the recommend step's ``rec_excluded``) are never a segment's top or
    banner products in the API, and the ranks stay 1, 2, 3, … after them."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = RunData.open(copy)
    try:
        top = before.segment_products
        first = top[top["rank"] == 1].iloc[0]
        seg, gone = int(first["segment"]), str(first["product_id"])
        second = str(top[(top["segment"] == seg) & (top["rank"] == 2)].iloc[0]["product_id"])
    finally:
        before.close()
    with duckdb.connect(str(copy / "shopseg.duckdb")) as con:
        con.execute("CREATE OR REPLACE TABLE rec_excluded AS SELECT ? AS id, 0 AS code", [gone])
    after = RunData.open(copy)
    try:
        p = after.segment_products
        assert gone not in set(p["product_id"])
        mine = p[p["segment"] == seg]
        assert mine["rank"].tolist() == list(range(1, len(mine) + 1))
        assert mine.iloc[0]["product_id"] == second
        assert gone not in {b["product_id"] for b in after.banner_products(seg, n=50)}
    finally:
        after.close()


def test_segment_rules_from_the_run(run_dir: Path, tmp_path: Path) -> None:
    """Rules come from ``segment_rules.json`` when the run has it, else from the ``segment_rules`` table, else
    they are null."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "segment_rules.json").unlink(missing_ok=True)
    con = duckdb.connect(str(run / "shopseg.duckdb"))
    con.execute("DROP TABLE IF EXISTS segment_rules")
    con.close()
    with TestClient(create_app(run)) as c:
        assert c.get("/segments/0").json()["rules"] is None
    con = duckdb.connect(str(run / "shopseg.duckdb"))
    con.execute("CREATE TABLE segment_rules AS SELECT 1 AS segment, 'frequency >= 6' AS rule, 0.8 AS fidelity")
    con.close()
    with TestClient(create_app(run)) as c:
        assert c.get("/segments/1").json()["rules"] == [{"rule": "frequency >= 6", "fidelity": 0.8}]
        assert c.get("/segments/0").json()["rules"] is None
    rules = {"segments": [{"segment": 0, "rule": "recency_days <= 35", "fidelity": 0.9}]}
    (run / "segment_rules.json").write_text(json.dumps(rules))
    with TestClient(create_app(run)) as c:
        assert c.get("/segments/0").json()["rules"] == rules["segments"][0]
        assert c.get("/segments/1").json()["rules"] is None


def test_segment_errors(client: TestClient, crm: pd.DataFrame) -> None:
    err = _is_error(client.get("/segments/99"), 404, "not_found")
    assert "99" in err["message"] and str(sorted(crm["segment"].unique().tolist())) in err["message"]
    _is_error(client.get("/segments/x"), 422, "validation_error")
    _is_error(client.get("/segments/-1"), 422, "validation_error")
    _is_error(client.get("/segments/0?n=0"), 422, "validation_error")


def test_customer_matches_the_crm_file_and_recommendations(
    client: TestClient, crm: pd.DataFrame, recs: pd.DataFrame
) -> None:
    for cid in crm["customer_id"].iloc[[0, 100, 300]]:
        c = client.get(f"/customers/{cid}?n=3").json()
        row = crm[crm["customer_id"] == cid].iloc[0]
        assert (c["segment"], c["segment_name"], c["action"]) == (row["segment"], row["segment_name"], row["action"])
        for f in ("recency_days", "frequency", "monetary", "avg_order_value", "tenure_days"):
            assert c["features"][f] == pytest.approx(row[f])
        assert c["attributes"]["last_purchase"] == pd.Timestamp(row["last_purchase"]).isoformat()
        mine = recs[recs["customer_id"] == cid].sort_values("rank").head(3)
        assert [r["product_id"] for r in c["recommendations"]] == mine["product_id"].tolist()
        assert [r["rank"] for r in c["recommendations"]] == [1, 2, 3][: len(mine)]
    full = client.get(f"/customers/{crm['customer_id'].iloc[0]}").json()
    assert len(full["recommendations"]) == min(10, (recs["customer_id"] == crm["customer_id"].iloc[0]).sum())


def test_customer_errors(client: TestClient) -> None:
    err = _is_error(client.get("/customers/no-such-customer"), 404, "not_found")
    assert "no-such-customer" in err["message"] and "/score" in err["message"]
    _is_error(client.get(f"/customers/{'9' * 201}"), 422, "validation_error")
    _is_error(client.get("/customers/12347?n=101"), 422, "validation_error")


# ------------------------------------------------------------------------------------------------ /score


def _raw_lines(run_dir: Path, customer_id: str) -> list[dict[str, Any]]:
    """A customer's raw input lines exactly as the source file had them (source column names, text values)."""
    con = duckdb.connect(str(run_dir / "shopseg.duckdb"), read_only=True)
    try:
        frame = con.execute(
            "SELECT * EXCLUDE (_source) FROM raw_transactions r WHERE rowid + 1 IN "
            "(SELECT _row_id FROM transactions_flagged WHERE customer_id = ?) ORDER BY rowid",
            [customer_id],
        ).df()
    finally:
        con.close()
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in frame.to_dict(orient="records")]


def test_score_reproduces_a_known_customer(client: TestClient, run_dir: Path, crm: pd.DataFrame) -> None:
    """A customer's own raw lines, scored as of the run's date, give the run's features and segment."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for cid in crm.sort_values("frequency")["customer_id"].iloc[[-1, len(crm) // 2]]:
        rows = _raw_lines(run_dir, cid)
        r = client.post("/score", json={"orders": rows, "as_of": manifest["as_of"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["input_rows"] == len(rows) == body["clean_rows"] + sum(body["quarantined"].values())
        (c,) = body["customers"]
        row = crm[crm["customer_id"] == cid].iloc[0]
        assert c["customer_id"] == cid and c["known"] is True
        assert c["segment"] == row["segment"] and c["segment_name"] == row["segment_name"]
        for f, v in c["features"].items():
            assert v == pytest.approx(row[f], rel=1e-9, abs=1e-9), f


def test_score_new_customer_with_canonical_columns(client: TestClient, data: RunData, lines: pd.DataFrame) -> None:
    orders = [
        {"order_id": "N1", "product_id": "85123A", "quantity": 6, "unit_price": 2.55, "ts": "2011-11-01 10:00"},
        {"order_id": "N1", "product_id": "22423", "quantity": 1, "unit_price": 12.75, "ts": "2011-11-01 10:00"},
        {"order_id": "N2", "product_id": "85123A", "quantity": 2, "unit_price": 2.95, "ts": "2011-12-01 09:30"},
        {"order_id": "C3", "product_id": "22423", "quantity": -1, "unit_price": 12.75, "ts": "2011-12-02 09:30"},
        {"order_id": "N4", "product_id": "POST", "quantity": 1, "unit_price": 18.0, "ts": "2011-12-02 09:30"},
    ]
    r = client.post("/score", json={"customer_id": "brand-new", "orders": orders, "n": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["quarantined"] == {"cancellation": 1, "non_product": 1}
    assert body["clean_rows"] == 3
    # as_of: the run's date (later than the customer's last order)
    assert body["as_of"].startswith(data.as_of.isoformat()[:10])
    (c,) = body["customers"]
    assert c["known"] is False
    f = c["features"]
    assert f["frequency"] == 2
    assert f["monetary"] == pytest.approx(6 * 2.55 + 12.75 + 2 * 2.95)
    assert f["recency_days"] == (data.as_of - pd.Timestamp("2011-12-01")).days
    # the segment comes from the saved model; recommendations are its top products not yet bought, in order
    expected_seg = int(data.segmenter.predict(pd.DataFrame([f]))[0])
    assert c["segment"] == expected_seg
    top = [p["product_id"] for p in data.segment(expected_seg, 100)["top_products"]]
    want = [p for p in top if p not in {"85123A", "22423"}][:5]
    assert [x["product_id"] for x in c["recommendations"]] == want
    assert [x["rank"] for x in c["recommendations"]] == [1, 2, 3, 4, 5]


def test_score_several_customers_in_one_call(client: TestClient) -> None:
    orders = [
        {
            "CustomerID": cid,
            "InvoiceNo": f"9{n}{i}",
            "StockCode": "22423",
            "Quantity": 1,
            "UnitPrice": 10.0,
            "InvoiceDate": f"2011-0{i + 1}-15 12:00",
        }
        for n, cid in enumerate(("x1", "y2"))
        for i in range(3 if cid == "x1" else 1)
    ]
    body = client.post("/score", json={"orders": orders}).json()
    got = {c["customer_id"]: c["features"]["frequency"] for c in body["customers"]}
    assert got == {"x1": 3.0, "y2": 1.0}


@pytest.mark.parametrize(
    ("payload", "status", "code", "words"),
    [
        ({"orders": []}, 422, "validation_error", "orders"),
        ({"orders": [{"x": 1}], "n": 0}, 422, "validation_error", "n"),
        ({"orders": [{"x": 1}], "colour": "red"}, 422, "validation_error", "colour"),
        ({"orders": "not a list"}, 422, "validation_error", "orders"),
        ({"orders": [{"foo": 1, "bar": 2}]}, 422, "schema_error", "customer_id"),
        ({"orders": [{"customer_id": "a", "ts": "not a date", "unit_price": 1}]}, 422, "data_error", "bad_date"),
        ({"customer_id": "a", "orders": [{"ts": "2011-01-01", "price": -3}]}, 422, "data_error", "non_positive"),
    ],
)
def test_score_errors(client: TestClient, payload: Any, status: int, code: str, words: str) -> None:
    err = _is_error(client.post("/score", json=payload), status, code)
    assert words in err["message"]


def test_request_bodies_are_limited(data: RunData) -> None:
    with TestClient(create_app(data, max_body_bytes=2_000)) as c:
        big = {"orders": [{"customer_id": "a", "ts": "2011-01-01", "unit_price": 1, "pad": "x" * 500}] * 10}
        err = _is_error(c.post("/score", json=big), 413, "payload_too_large")
        assert "2,000 bytes" in err["message"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while streaming
            yield json.dumps(big).encode()

        _is_error(c.post("/score", content=chunks(), headers={"content-type": "application/json"}), 413)
        small = {"orders": [{"customer_id": "a", "ts": "2011-01-01", "unit_price": 1}]}
        assert c.post("/score", json=small).status_code == 200


def test_bad_json_and_unknown_routes_share_the_error_shape(client: TestClient) -> None:
    err = _is_error(
        client.post("/score", content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "validation_error",
    )
    assert "JSON" in err["message"]
    _is_error(client.get("/no/such/route"), 404, "not_found")
    r = client.delete("/segments")
    _is_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET"


# ------------------------------------------------------------------------------------------------ similar items


def test_similar_items_are_co_bought_items(client: TestClient, lines: pd.DataFrame) -> None:
    pairs = lines.dropna(subset=["product_id"]).drop_duplicates(["customer_id", "product_id"])
    item = "85123A"
    buyers = set(pairs.loc[pairs["product_id"] == item, "customer_id"])
    co = pairs[pairs["customer_id"].isin(buyers) & (pairs["product_id"] != item)].groupby("product_id").size()
    pop = pairs.groupby("product_id").size()
    n_all = pairs["customer_id"].nunique()
    lift = (co / len(buyers)) / (pop[co.index] / n_all)
    exp = pd.DataFrame({"co": co, "lift": lift}).reset_index()
    exp = exp.sort_values(["co", "lift", "product_id"], ascending=[False, False, True]).head(8)
    body = client.get(f"/items/{item}/similar?n=8").json()
    assert body["buyers"] == len(buyers)
    assert [s["product_id"] for s in body["similar"]] == exp["product_id"].tolist()
    for s, (_, e) in zip(body["similar"], exp.iterrows(), strict=True):
        assert s["co_buyers"] == e["co"]
        assert s["confidence"] == pytest.approx(e["co"] / len(buyers))
        assert s["lift"] == pytest.approx(e["lift"])
    by_lift = client.get(f"/items/{item}/similar?n=5&by=lift&min_count=10").json()["similar"]
    want = exp.iloc[:0]
    full = pd.DataFrame({"co": co, "lift": lift}).reset_index()
    want = full[full["co"] >= 10].sort_values(["lift", "co", "product_id"], ascending=[False, False, True]).head(5)
    assert [s["product_id"] for s in by_lift] == want["product_id"].tolist()


def test_similar_items_errors(client: TestClient) -> None:
    err = _is_error(client.get("/items/NO-SUCH-ITEM/similar"), 404, "not_found")
    assert "NO-SUCH-ITEM" in err["message"]
    _is_error(client.get("/items/85123A/similar?by=colour"), 422, "validation_error")
    _is_error(client.get("/items/85123A/similar?min_count=0"), 422, "validation_error")


# ------------------------------------------------------------------------------------------------ the run


def test_a_folder_that_is_not_a_run_fails_before_serving(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        create_app(tmp_path / "missing")
    with pytest.raises(NotFoundError, match=r"manifest\.json missing"):
        create_app(tmp_path)


def test_concurrent_requests_see_the_same_answers(data: RunData, crm: pd.DataFrame) -> None:
    """One RunData shared by many threads (as under uvicorn): lookups and SQL routes agree with serial calls."""
    ids = crm["customer_id"].iloc[::25].tolist()
    items = ["85123A", "22423", "47566", "21212"]
    serial = [data.customer(c, 5) for c in ids], [data.similar_items(i, 5) for i in items]
    with ThreadPoolExecutor(8) as pool:
        cust = list(pool.map(lambda c: data.customer(c, 5), ids * 3))
        sim = list(pool.map(lambda i: data.similar_items(i, 5), items * 5))
    assert cust == serial[0] * 3
    assert sim == serial[1] * 5


# ------------------------------------------------------------------------------------------------ OpenAPI


def test_openapi_document_is_current(client: TestClient) -> None:
    doc = openapi_document()
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    assert committed == doc, "docs/openapi.json is stale: run `make docs`"
    served = client.get("/openapi.json").json()
    assert served == doc
    assert set(doc["paths"]) == {
        "/health",
        "/segments",
        "/segments/{segment_id}",
        "/customers/{customer_id}",
        "/score",
        "/items/{product_id}/similar",
    }
    assert doc["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


SCHEMA = schemathesis.openapi.from_path(
    ROOT / "docs" / "openapi.json",
    config=schemathesis.Config.from_dict(
        {
            "seed": 6,
            "generation": {"deterministic": True, "mode": "positive"},
            "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
            "warnings": False,
        }
    ),
)


@pytest.fixture(scope="module")
def live_url(run_dir: Path) -> Iterator[str]:
    """The real server (``shopseg serve`` under uvicorn) on a free loopback port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shopseg.cli",
            "serve",
            str(run_dir),
            "--port",
            str(port),
            "--api-key",
            KEY,
            "--workers",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health", 90, proc)
        yield base
    finally:
        out = stop(proc)
        assert "Application startup complete" in out, out


@SCHEMA.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case, live_url: str) -> None:
    """Requests generated from the committed document, sent to the real server, get documented status codes,
    content types and bodies, never a server error; a missing or wrong key is refused (schemathesis probes
    that too)."""
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    # a body valid by the schema can still be unusable data (an unknown id, no usable order line): that is a
    # documented 4xx, not a failure of the API
    case.call_and_validate(
        base_url=live_url, headers={"X-API-Key": KEY}, excluded_checks=[positive_data_acceptance], timeout=60
    )


# ------------------------------------------------------------------------------------------------ real server


def test_real_server_on_loopback(live_url: str, crm: pd.DataFrame) -> None:
    with httpx.Client(base_url=live_url, headers={"X-API-Key": KEY}, timeout=60) as c:
        assert c.get("/health").json()["customers"] == len(crm)
        _is_error(c.get("/segments", headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        ids = crm["customer_id"].iloc[:40].tolist()
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda cid: c.get(f"/customers/{cid}").json()["segment"], ids))
        assert got == crm["segment"].iloc[:40].tolist()
        scored = c.post(
            "/score",
            json={"customer_id": "n", "orders": [{"ts": "2011-12-01", "unit_price": 5.0, "quantity": 2}]},
        )
        assert scored.status_code == 200, scored.text
        assert scored.json()["customers"][0]["features"]["monetary"] == 10.0
        _is_error(c.post("/score", content=b"x" * (1024 * 1024 + 1)), 413, "payload_too_large")


def test_feature_frame_of_score_is_numeric(data: RunData) -> None:
    """Scored features are floats in the JSON, timestamps go to attributes (as for known customers)."""
    res = data.score_orders([{"customer_id": "z", "ts": "2011-06-01 10:00", "unit_price": 3.0, "quantity": 1}], n=2)
    c = res.customers[0]
    assert all(isinstance(v, float) or v is None for v in c["features"].values())
    assert c["attributes"]["first_purchase"] == "2011-06-01T10:00:00"
    assert np.isclose(c["features"]["monetary"], 3.0)


@pytest.mark.slow
def test_several_worker_processes(run_dir: Path, crm: pd.DataFrame) -> None:
    """--workers 2: each worker loads the run (slow imports must not get workers killed by the supervisor), and
    a worker that dies is replaced while the other keeps answering."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shopseg.cli", "serve", str(run_dir), "--port", str(port), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(ln.decode(errors="replace") for ln in proc.stdout or []))
    reader.start()

    def log_has(words: str, times: int) -> bool:
        end = time.monotonic() + 120
        while time.monotonic() < end and sum(words in ln for ln in list(lines)) < times:
            time.sleep(0.2)
        return sum(words in ln for ln in list(lines)) >= times

    base = f"http://127.0.0.1:{port}"
    cid = crm["customer_id"].iloc[3]
    try:
        wait_http(f"{base}/health", 120, proc)
        assert log_has("Application startup complete", 2), "".join(lines)
        with httpx.Client(base_url=base, timeout=60) as c:
            answers = {c.get(f"/customers/{cid}").json()["segment"] for _ in range(20)}
        assert answers == {int(crm["segment"].iloc[3])}
        assert not any("died" in ln for ln in lines), "".join(lines)
        workers = [int(ln.split("[")[1].split("]")[0]) for ln in list(lines) if "Started server process" in ln]
        assert len(workers) == 2, "".join(lines)
        os.kill(workers[0], signal.SIGKILL)
        assert log_has("died", 1) and log_has("Application startup complete", 3), "".join(lines)
        for _ in range(20):  # new connections, spread over both sockets: every one is answered
            with httpx.Client(base_url=base, timeout=60) as c:
                assert c.get(f"/customers/{cid}").json()["segment"] == int(crm["segment"].iloc[3])
    finally:
        out = stop(proc)
        reader.join(30)
    text = "".join(lines) + out
    assert proc.returncode == 0, text
    assert sum("died" in ln for ln in lines) == 1, text


def test_worker_sockets_share_the_port_and_spread_connections() -> None:
    """Each worker listens on its own socket of one port (SO_REUSEPORT); the kernel spreads connections over
    them, where one shared socket let the first worker to wake accept a whole burst. A port in use is a
    ConfigError naming it."""
    socks = _listen("127.0.0.1", 0, 2)
    clients: list[socket.socket] = []
    try:
        port = socks[0].getsockname()[1]
        assert socks[1].getsockname()[1] == port != 0
        for _ in range(64):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        accepted = []
        for s in socks:
            s.settimeout(0.5)
            n = 0
            with contextlib.suppress(TimeoutError):
                while True:
                    conn, _ = s.accept()
                    conn.close()
                    n += 1
            accepted.append(n)
        assert sum(accepted) == 64 and min(accepted) >= 8, accepted  # both get a share (binomial: ~32 each)
        with socket.socket() as plain:  # a port another program holds (without SO_REUSEPORT)
            plain.bind(("127.0.0.1", 0))
            plain.listen()
            taken = plain.getsockname()[1]
            with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{taken} .*another --port"):
                _listen("127.0.0.1", taken, 2)
    finally:
        for c in clients:
            c.close()
        for s in socks:
            s.close()


# ------------------------------------------------------------------------------------------------ batching


def _jobs(run_dir: Path, crm: pd.DataFrame) -> list[ScoreJob]:
    """Requests of every kind the shared pass has to get right: the run's own layout and dates, ISO dates, dates
    to detect (day first), decimal commas, epoch seconds, duplicates, cancellations matched to purchases, no
    product or order column, several customers in one request."""
    cid = str(crm.sort_values("frequency")["customer_id"].iloc[len(crm) // 2])
    raw = _raw_lines(run_dir, cid)
    iso = [{**r, "InvoiceDate": pd.Timestamp(r["InvoiceDate"]).isoformat(sep=" ")} for r in raw]
    mixed = [
        {"customer_id": c, "order_id": o, "product_id": p, "quantity": q, "unit_price": u, "ts": t}
        for c, o, p, q, u, t in [
            ("m1", "N7", "85123A", 6, 2.55, "13/10/2011 10:00"),
            ("m1", "N7", "85123A", 6, 2.55, "13/10/2011 10:00"),  # an exact copy
            ("m1", "N8", "22423", 2, 12.75, "25/11/2011 09:30"),
            ("m1", "C9", "22423", -1, 12.75, "26/11/2011 09:30"),  # a cancellation of an earlier purchase
            ("m2", "N9", "POST", 1, 18.0, "01/12/2011 08:00"),  # not a product
            ("m2", "B1", "47566", 3, 4.95, "02/12/2011 18:45"),
            ("m3", "B2", "21212", 0, 0.55, "03/12/2011 11:00"),  # quantity zero
        ]
    ]
    comma = [
        {"Client": "k", "Date": "2011-11-0" + str(i) + " 12:00", "Qty": str(i), "Price": f"{i},5{i}", "SKU": a}
        for i, a in zip(range(1, 5), ("85123A", "22423", "47566", "85123A"), strict=True)
    ]
    epoch = [{"customer_id": "e", "ts": str(1_320_000_000 + i * 86_400), "unit_price": 1.5 + i} for i in range(4)]
    bare = [{"customer_id": "b", "ts": f"2011-0{i}-02 10:00", "amount": 10.0 * i} for i in range(1, 6)]
    return [
        ScoreJob(raw, as_of=datetime.fromisoformat(json.loads((run_dir / "manifest.json").read_text())["as_of"])),
        ScoreJob(iso, customer_id="iso-" + cid, n=3),
        ScoreJob(mixed, n=5),
        ScoreJob(comma, n=2),
        ScoreJob(epoch),
        ScoreJob(bare, customer_id="bare", n=1),
    ]


def _same(a: ScoreResult | ShopsegError, b: ScoreResult | ShopsegError) -> None:
    if isinstance(a, ShopsegError) or isinstance(b, ShopsegError):
        assert type(a) is type(b) and str(a) == str(b), (a, b)
    else:
        assert a.to_dict() == b.to_dict()


def test_shared_pass_gives_what_the_library_steps_give(data: RunData, run_dir: Path, crm: pd.DataFrame) -> None:
    """The scoring pass (its own statements) against the library's ingest, clean and feature steps run as a
    pipeline takes them: the same features, segments, recommendations, counts and notes for every kind of input."""
    jobs = _jobs(run_dir, crm)
    for i, job in enumerate(jobs):
        assert data._prepare(i, job) is not None  # the shared pass takes it (not the step-by-step fallback)
        alone = data._score_alone(job)
        assert alone.customers, job
        _same(data.score_orders(job.rows, customer_id=job.customer_id, as_of=job.as_of, n=job.n), alone)
    mixed = data._score_alone(jobs[2])
    assert mixed.quarantined == {"non_product": 1, "non_positive_quantity": 1, "duplicate": 1, "cancellation": 1}
    assert [c["customer_id"] for c in mixed.customers] == ["m1", "m2"]
    assert mixed.customers[0]["features"]["return_rate"] == pytest.approx(12.75 / (6 * 2.55 + 2 * 12.75))
    comma = data._score_alone(jobs[3]).customers[0]["features"]
    assert comma["monetary"] == pytest.approx(1 * 1.51 + 2 * 2.52 + 3 * 3.53 + 4 * 4.54)
    assert data._score_alone(jobs[5]).notes == [
        "no product column: product features and recommendations are skipped",
        "no order id column: each customer's lines at one timestamp form one order",
    ]


def test_a_batch_gives_each_request_what_it_gets_alone(data: RunData, run_dir: Path, crm: pd.DataFrame) -> None:
    """Requests scored in one pass: each gets exactly its result alone, two requests with the same customer id
    do not mix, and bad requests fail alone with their own errors."""
    jobs = _jobs(run_dir, crm)
    same_a = ScoreJob([{"customer_id": "dup", "ts": "2011-11-01 10:00", "unit_price": 5.0, "quantity": 2}])
    same_b = ScoreJob(
        [
            {"customer_id": "dup", "ts": "2011-03-01 10:00", "unit_price": 90.0, "quantity": 4},
            {"customer_id": "dup", "ts": "2011-06-01 10:00", "unit_price": 70.0, "quantity": 3},
        ]
    )
    bad_date = ScoreJob([{"customer_id": "a", "ts": "not a date", "unit_price": 1}])
    no_customer = ScoreJob([{"foo": 1, "bar": 2}])
    batch = [jobs[0], same_a, bad_date, *jobs[1:], no_customer, same_b]
    together = data.score_many(batch)
    for job, got in zip(batch, together, strict=True):
        try:
            alone: ScoreResult | ShopsegError = data.score_orders(
                job.rows, customer_id=job.customer_id, as_of=job.as_of, n=job.n
            )
        except ShopsegError as exc:
            alone = exc
        _same(got, alone)
    assert isinstance(together[2], DataError) and "bad_date" in str(together[2])
    assert isinstance(together[-2], SchemaError)
    a, b = together[1], together[-1]
    assert isinstance(a, ScoreResult) and isinstance(b, ScoreResult)
    assert a.customers[0]["features"]["monetary"] == 10.0
    assert b.customers[0]["features"]["monetary"] == 4 * 90.0 + 3 * 70.0


def test_passes_reuse_their_database_without_leftovers(data: RunData, run_dir: Path, crm: pd.DataFrame) -> None:
    """Passes share pooled databases and skip the duplicate and returns statements when no line needs them: a
    pass after one with a cancellation and a copy sees neither; jobs of two column layouts that all have every
    column are labelled in the feature frame's order, not in the order of their layouts."""
    jobs = _jobs(run_dir, crm)
    first = data.score_many([jobs[2]])[0]  # m1: a cancellation matched to a purchase, and an exact copy
    assert isinstance(first, ScoreResult)
    assert first.customers[0]["features"]["return_rate"] > 0 and first.quarantined["duplicate"] == 1
    again = [{**r, "order_id": "N" + str(i)} for i, r in enumerate(jobs[2].rows[:3])]  # m1 again, no cancellation
    later = data.score_many([ScoreJob(again)])[0]
    assert isinstance(later, ScoreResult) and "duplicate" not in later.quarantined
    assert later.customers[0]["features"]["return_rate"] == 0.0
    assert later.customers[0]["features"]["frequency"] == 3
    with data._pool.get() as db:  # the same statements, prepared once, read each pass's own lines
        assert any("feature" in sql for sql in db.prepared) and len(db.prepared) >= 2
    # customers of three segments, the first and last with lower-cased column names (a second layout): the pass
    # groups jobs by layout, so its order of jobs (0, 2, 1) is not the feature frame's (0, 1, 2)
    picked = crm.sort_values("customer_id").groupby("segment")["customer_id"].first().iloc[:3].tolist()
    assert len(picked) == 3
    lines = [_raw_lines(run_dir, str(c)) for c in picked]
    layouts = [ScoreJob([{k.lower(): v for k, v in r.items()} for r in lines[0]]), ScoreJob(lines[1])]
    layouts.append(ScoreJob([{k.lower(): v for k, v in r.items()} for r in lines[2]]))
    got = data.score_many(layouts)
    for job, res in zip(layouts, got, strict=True):
        _same(res, data._score_alone(job))
    assert [r.customers[0]["segment"] for r in got if isinstance(r, ScoreResult)] == [
        int(crm.set_index("customer_id")["segment"][c]) for c in picked
    ]


def test_a_pass_scores_each_request_as_of_its_own_date(data: RunData, run_dir: Path, crm: pd.DataFrame) -> None:
    """Customers whose orders run past the run's as-of are scored as of the day after their last order (or
    their request's as_of): requests of different dates share one pass and one feature query, and each gets
    what it gets alone."""
    cids = crm.sort_values("customer_id")["customer_id"].iloc[:4].tolist()
    run_as_of = pd.Timestamp(data.as_of)
    jobs = []
    for i, cid in enumerate(cids):
        rows = _raw_lines(run_dir, str(cid))
        times = [pd.Timestamp(r["InvoiceDate"]) for r in rows]
        shift = run_as_of - max(times) + pd.Timedelta(days=3 + 7 * i)  # the last order 3, 10, 17, 24 days after
        later = [{**r, "InvoiceDate": str(t + shift)} for r, t in zip(rows, times, strict=True)]
        jobs.append(ScoreJob(later, customer_id=f"x{i}"))
    jobs.append(ScoreJob(jobs[0].rows, customer_id="fixed", as_of=datetime(2013, 1, 1)))
    got = data.score_many(jobs)
    dates = {r.as_of for r in got if isinstance(r, ScoreResult)}
    assert len(dates) == len(jobs)  # five dates in one pass
    with data._pool.get() as db:  # one feature query for all of them, with each customer's date
        assert any("JOIN _score_as_of" in sql for sql in db.prepared)
    for job, res in zip(jobs, got, strict=True):
        _same(res, data._score_alone(job))
    first = got[0]
    assert isinstance(first, ScoreResult) and first.customers[0]["features"]["recency_days"] >= 1


def test_concurrent_requests_share_one_pass(data: RunData, run_dir: Path, crm: pd.DataFrame) -> None:
    """The batcher: requests queued together are scored in one pass, each gets its own result or error."""
    jobs = [*_jobs(run_dir, crm), ScoreJob([{"customer_id": "a", "ts": "not a date", "unit_price": 1}])]
    batcher = ScoreBatcher(data)

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(*(batcher.score(j) for j in jobs), return_exceptions=True)

    got = asyncio.run(all_at_once())
    assert batcher.passes == 1 and batcher.scored == len(jobs)
    for job, res in zip(jobs, got, strict=True):
        if isinstance(res, ShopsegError):
            with pytest.raises(type(res), match="bad_date"):
                data.score_orders(job.rows, customer_id=job.customer_id, as_of=job.as_of, n=job.n)
        else:
            _same(res, data.score_orders(job.rows, customer_id=job.customer_id, as_of=job.as_of, n=job.n))


def test_the_clients_of_a_pass_share_the_next_one(data: RunData) -> None:
    """Under load the clients just answered send their next requests a few milliseconds apart: the first of them
    finds the queue empty (the drain task has ended) and must still wait for the others, not be scored alone
    and split the cohort in two passes. A request after a quiet spell is scored at once."""
    jobs = [ScoreJob([{"customer_id": f"c{i}", "ts": "2011-06-01 10:00", "unit_price": 1.0 + i}]) for i in range(10)]
    batcher = ScoreBatcher(data, linger_s=0.3)

    async def cohorts() -> tuple[int, float]:
        await asyncio.gather(*(batcher.score(j) for j in jobs))  # one pass of 10
        first = asyncio.ensure_future(batcher.score(jobs[0]))
        await asyncio.sleep(0.03)  # the rest of the cohort, a moment later
        await asyncio.gather(first, *(batcher.score(j) for j in jobs[1:]))
        await asyncio.sleep(0.4)  # quiet: longer than the linger
        start = time.monotonic()
        await batcher.score(jobs[0])
        return batcher.passes, time.monotonic() - start

    passes, alone_s = asyncio.run(cohorts())
    assert passes == 3 and batcher.scored == 21
    assert alone_s < 0.25  # not held back waiting for a cohort that is not coming


def test_concurrent_http_requests_get_their_own_answers(data: RunData) -> None:
    """Concurrent POST /score calls through the app (one event loop, as under uvicorn): each answer equals the
    answer to the same call made alone; the invalid one gets its own 4xx error in the API's shape."""
    bodies: list[dict[str, Any]] = [
        {"customer_id": "same", "orders": [{"ts": f"2011-0{i}-10 10:00", "unit_price": 3.0 * i}]} for i in range(1, 6)
    ]
    bodies.append({"customer_id": "bad", "orders": [{"ts": "2011-05-10", "unit_price": -2}]})
    app = create_app(data, api_key=KEY)
    headers = {"X-API-Key": KEY}

    async def send(concurrently: bool) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as c:
            if concurrently:
                return list(await asyncio.gather(*(c.post("/score", json=b) for b in bodies)))
            return [await c.post("/score", json=b) for b in bodies]

    together, alone = asyncio.run(send(True)), asyncio.run(send(False))
    for t, a in zip(together, alone, strict=True):
        assert t.status_code == a.status_code and t.json() == a.json()
    assert [r.status_code for r in together] == [200] * 5 + [422]
    assert [r.json()["customers"][0]["features"]["monetary"] for r in together[:5]] == [3.0 * i for i in range(1, 6)]
    err = _is_error(together[-1], 422, "data_error")
    assert "non_positive_price" in err["message"]


# ------------------------------------------------------------------------------------------------ lookups


def test_lookup_bodies_are_the_customer_records(data: RunData, crm: pd.DataFrame) -> None:
    """The ready-made lookup bodies are the JSON of the freshly built customer records, for any n."""
    made = data.precompute_lookups()
    assert made == len(crm)
    for cid in crm["customer_id"].iloc[::40]:
        for n in (1, 10, 100):
            fresh = data.customer(cid, n)
            assert data.customer_json(cid, n) == json_bytes(fresh)
            assert json.loads(data.customer_json(cid, n)) == fresh
    assert data.precompute_lookups(limit=len(crm) - 1) == 0
    with pytest.raises(NotFoundError):
        data.customer_json("no-such-customer")


def test_fast_lookups_answer_like_the_route(data: RunData, crm: pd.DataFrame) -> None:
    """GET /customers/{id} answered before FastAPI (FastPaths) and by the route (any other query) agree; what
    the fast path does not take still gets the route's errors."""
    cid = str(crm["customer_id"].iloc[7])
    with TestClient(create_app(data, api_key=KEY)) as c:
        key = {"X-API-Key": KEY}
        fast = c.get(f"/customers/{cid}?n=3", headers=key)
        routed = c.get(f"/customers/{cid}?n=3&unused=1", headers=key)  # not the fast path's query: the route
        assert fast.status_code == routed.status_code == 200
        assert fast.content == routed.content and fast.json() == data.customer(cid, 3)
        assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
        assert c.get(f"/customers/{cid}", headers=key).json() == data.customer(cid, 10)
        _is_error(c.get(f"/customers/{cid}"), 401, "unauthorized")
        _is_error(c.get(f"/customers/{cid}", headers={"X-API-Key": KEY + "x"}), 401, "unauthorized")
        _is_error(c.get(f"/customers/{cid}?n=0", headers=key), 422, "validation_error")
        _is_error(c.get(f"/customers/{cid}?n=many", headers=key), 422, "validation_error")
        _is_error(c.get("/customers/no-such-customer", headers=key), 404, "not_found")
        _is_error(c.post(f"/customers/{cid}", headers=key), 405, "method_not_allowed")


def test_score_bodies_the_fast_path_does_not_take(client: TestClient) -> None:
    """POST /score without a JSON content type, or with a body the model refuses, goes to FastAPI's route: the
    same answers as before there was a fast path."""
    body = {"customer_id": "t", "orders": [{"ts": "2011-05-10", "unit_price": 2.0}]}
    text = json.dumps(body).encode()
    plain = client.post("/score", content=text, headers={"content-type": "text/plain"})
    _is_error(plain, 422, "validation_error")
    ok = client.post("/score", content=text, headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200 and ok.json()["customers"][0]["features"]["monetary"] == 2.0
    _is_error(client.post("/score", json={**body, "n": 1000}), 422, "validation_error")


def test_default_workers_fit_the_machine() -> None:
    import os

    assert 1 <= default_workers() <= min(4, os.cpu_count() or 1)
    with pytest.raises(ConfigError, match="workers"):
        serve(".", workers=-1)


def test_workers_off_linux_use_uvicorns_supervisor(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where SO_REUSEPORT does not spread connections (macOS), several workers run under uvicorn's own
    supervisor on its shared socket; on Linux, under shopseg's, one socket each."""
    import uvicorn

    from shopseg.serve import api

    calls: list[dict[str, Any]] = []

    def fake_run(target: Any, *, timeout_worker_healthcheck: int = 5, **kw: Any) -> None:
        calls.append({"target": target, "timeout_worker_healthcheck": timeout_worker_healthcheck, **kw})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(api, "_serve_workers", lambda socks, options: calls.append({"socks": len(socks)}))
    monkeypatch.setattr(api, "_listen", lambda host, port, workers: [object()] * workers)
    for var in (api._ENV_RUN, api._ENV_BODY, api._ENV_KEY):  # serve sets them: restored after the test
        monkeypatch.setenv(var, "")
    serve(run_dir, workers=3, port=0)
    assert calls == [{"socks": 3}]
    monkeypatch.setattr(sys, "platform", "darwin")
    serve(run_dir, workers=3, port=0)
    assert calls[1]["target"] == "shopseg.serve.api:app_from_env" and calls[1]["workers"] == 3
    assert calls[1]["factory"] is True and calls[1]["timeout_worker_healthcheck"] == 120


def test_the_first_check_in_python_counts_what_duckdb_counts(data: RunData) -> None:
    """The pass's first check (customers present, dates, dates in the first layout) answered in Python gives
    DuckDB's counts, or None where only DuckDB's parser can tell (other shapes, impossible dates, tabs, which
    SQL's trim keeps)."""
    from shopseg.ingest.mapping import DATE_FORMATS
    from shopseg.serve.rundir import _quick_counts

    assert DATE_FORMATS[0] == "%Y-%m-%d %H:%M:%S"  # the layout _quick_counts recognises
    cases: list[tuple[list[Any], list[Any], bool]] = [
        (["a", "b", " "], ["2011-01-05 10:00:00", " 2011-12-31 23:59:59 ", None], True),
        (["a", None, ""], ["2012-02-29 00:00:00"], True),
        ([" ", None], [None, None], True),
        (["a"], ["2011-02-30 10:00:00"], False),  # no such day
        (["a"], ["2011-1-5 10:00:00"], False),  # DuckDB may read it; Python does not guess
        (["a"], ["\t2011-01-05 10:00:00"], False),
        (["a"], ["2011-01-05T10:00:00"], False),
        (["a"], [""], False),
    ]
    con = duckdb.connect()
    for customers, dates, certain in cases:
        n = max(len(customers), len(dates))
        rows = [
            {"customer_id": customers[i % len(customers)], "ts": dates[i % len(dates)], "unit_price": "1"}
            for i in range(n)
        ]
        p = data._prepare(0, ScoreJob(rows))
        assert p is not None
        got = _quick_counts(p, "customer_id", "ts")
        want = con.execute(
            "SELECT count(NULLIF(trim(c), '')), count(v), count(try_strptime(v, '%Y-%m-%d %H:%M:%S')) "
            "FROM (SELECT unnest(?) AS c, trim(unnest(?)) AS v)",
            [[r["customer_id"] for r in rows], [r["ts"] for r in rows]],
        ).fetchone()
        assert (got is not None) == certain, (customers, dates)
        if got is not None and p.date_format is None:
            assert got == want, (customers, dates)
        elif got is not None:  # a layout already known (no dates at all fit every layout): customers only
            assert got[0] == want[0], (customers, dates)
    con.close()


def test_json_bodies_are_compact_utf8_with_null_for_non_finite_numbers() -> None:
    body = {"a": float("nan"), "b": [1.5, float("-inf"), 2, "é", None, True], "c": {"d": 0.1}}
    assert json_bytes(body) == '{"a":null,"b":[1.5,null,2,"é",null,true],"c":{"d":0.1}}'.encode()
    assert json.loads(json_bytes({"x": 1e-7, "y": 12345678901234567890})) == {"x": 1e-7, "y": 12345678901234567890}


def test_order_values_become_the_text_a_file_would_hold() -> None:
    """Values of JSON order lines as text (what the typed-column SQL reads): the inline conversion of many values
    and the one-value rule agree; integral floats lose their '.0', booleans are lower case."""
    from shopseg.serve.rundir import _text, _texts

    values: list[Any] = [None, "a", " 7 ", 1, -3, 2.0, 2.5, -0.0, 1e20, float("inf"), True, False, np.float64(3.0)]
    assert _texts(values) == [_text(v) for v in values]
    want = [None, "a", " 7 ", "1", "-3", "2", "2.5", "0", "100000000000000000000", "inf", "true", "false", "3"]
    assert _texts(values) == want
    # the shortcuts for columns of one kind: text (kept as is), integers (not booleans: those are ints too)
    assert _texts(["a", None, " b"]) == ["a", None, " b"]
    assert _texts([1, -3, 10**20]) == ["1", "-3", "100000000000000000000"]
    assert _texts([True, 1]) == ["true", "1"]
    floats = [2.0, 2.5, -0.0, 1e20, float("inf"), 0.1]
    assert _texts(floats) == [_text(v) for v in floats] == ["2", "2.5", "0", "100000000000000000000", "inf", "0.1"]


def test_order_lines_with_columns_named_like_the_pass_own(data: RunData) -> None:
    """Lines with a 'rowid' or '_source' column (names the scoring pass and the raw tables use themselves) are
    scored the library's step-by-step way, where ingest reads them as 'rowid_' / '_source_'."""
    rows = [
        {"rowid": 7, "_source": "web", "customer_id": "r", "ts": "2011-06-01 10:00:00", "unit_price": 2.0},
        {"rowid": 8, "_source": "web", "customer_id": "r", "ts": "2011-07-01 10:00:00", "unit_price": 3.0},
    ]
    assert data._prepare(0, ScoreJob(rows)) is None
    res = data.score_orders(rows)
    assert res.customers[0]["features"]["monetary"] == 5.0 and res.customers[0]["features"]["frequency"] == 2


def test_the_columns_of_order_lines_in_first_seen_order() -> None:
    from shopseg.serve.rundir import _checked_names

    assert _checked_names(ScoreJob([{"a": 1, "b": 2}, {"b": 3, "a": 4}])) == ["a", "b"]
    assert _checked_names(ScoreJob([{"a": 1, "b": 2}, {"b": 3, "c": 4}, {"d": None}])) == ["a", "b", "c", "d"]
    with pytest.raises(DataError, match="no columns"):
        _checked_names(ScoreJob([{}, {}]))


def test_worker_app_loads_the_run_and_freezes_its_heap(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker process's app (settings from the environment `serve` sets) serves the run, and everything made
    while loading it is out of the garbage collector's full collections."""
    import gc

    from shopseg.serve import api

    monkeypatch.setenv(api._ENV_RUN, str(run_dir))
    monkeypatch.setenv(api._ENV_BODY, "2048")
    monkeypatch.delenv(api._ENV_KEY, raising=False)
    try:
        app = api.app_from_env()
        assert gc.get_freeze_count() > 0
        with TestClient(app) as client:
            assert client.get("/health").status_code == 200
            assert (
                client.post("/score", content=b"x" * 4096, headers={"content-type": "application/json"}).status_code
                == 413
            )
    finally:
        gc.unfreeze()
