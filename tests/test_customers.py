"""Customer tables: the coupon workbook (a committed synthetic look-alike; the real file when ../shared/data is
there), lookup sheets resolved to names, coupon features checked against the generator's rows, cleaning that
reconciles, CSV attribute tables, the composition table, and whole runs with and without orders."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from python_calamine import CalamineWorkbook
from sklearn.metrics import adjusted_rand_score

from shopseg.backends import DuckDBBackend
from shopseg.clean.customers import clean_customers
from shopseg.config import CustomersConfig, load_config
from shopseg.errors import ConfigError, SchemaError
from shopseg.features.customers import build_customer_features
from shopseg.ingest.customers import ingest_customers, is_customer_workbook
from shopseg.pipeline import run
from shopseg.profile.composition import composition_summary, segment_composition

ROOT = Path(__file__).resolve().parents[1]
LOOKALIKE = ROOT / "tests" / "data" / "coupons_lookalike.xlsx"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_coupon_lookalike", ROOT / "scripts" / "make_coupon_lookalike.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _generator()


def _sheets(path: Path) -> dict[str, list[list[object]]]:
    wb = CalamineWorkbook.from_path(str(path))
    return {n: wb.get_sheet_by_name(n).to_python(skip_empty_area=True) for n in wb.sheet_names}


def test_committed_lookalike_is_what_the_script_writes(tmp_path: Path) -> None:
    fresh = GEN.write(tmp_path / "fresh.xlsx")
    assert _sheets(fresh) == _sheets(LOOKALIKE)


@pytest.fixture
def workbook(backend: DuckDBBackend, tmp_path: Path) -> DuckDBBackend:
    ing = ingest_customers(backend, [LOOKALIKE], work=tmp_path / "w")
    clean_customers(backend, ing)
    backend.ingest = ing  # type: ignore[attr-defined]
    return backend


def test_lookup_sheets_resolved_to_names(workbook: DuckDBBackend) -> None:
    ing = workbook.ingest  # type: ignore[attr-defined]
    assert ing.sheet == "customers" and ing.id_column == "customer_id"
    kinds = {a.name: (a.kind, a.lookup) for a in ing.attributes}
    assert kinds == {
        "city": ("categorical", "cities.city_name"),
        "gender": ("categorical", "genders.gender_name"),
        "join_date": ("date", None),
    }
    sheets, _ = GEN.build()
    cities = {r[0]: r[1] for r in sheets["cities"][1:]}
    genders = {r[0]: r[1] for r in sheets["genders"][1:]}
    got = workbook.df("SELECT customer_id, city, gender FROM customers").set_index("customer_id")
    for cid, _join, city_id, gender_id in sheets["customers"][1:151]:
        assert got.loc[str(cid), "gender"] == genders[gender_id]
        if city_id in cities:
            assert got.loc[str(cid), "city"] == cities[city_id]
        else:  # city 99 is not in the sheet: empty
            assert pd.isna(got.loc[str(cid), "city"])
    # the planted unknown city_id is reported, not quarantined
    assert [lk.unresolved for lk in ing.lookups if lk.column == "city_id"] == [1]
    # chained lookup: transactions.branch_id -> branches.merchant_id -> merchants.merchant_name
    a = ing.activity
    assert a is not None and a.sheet == "transactions"
    assert {c.name for c in a.categorical} == {"branch", "merchant"}
    merchants = {r[0]: r[1] for r in sheets["merchants"][1:]}
    branches = {r[0]: r[1] for r in sheets["branches"][1:]}
    tx = workbook.df("SELECT event_id, merchant FROM coupons").set_index("event_id")["merchant"]
    for row in sheets["transactions"][1:50]:
        assert tx[str(row[0])] == merchants[branches[row[6]]]


def test_cleaning_reconciles_with_reasons(workbook: DuckDBBackend) -> None:
    rec = workbook.df("SELECT code, rows FROM customers_reconciliation").set_index("code")["rows"].to_dict()
    assert rec == {"missing_customer": 1, "duplicate_customer": 1, "clean": 150}
    dup = workbook.df("SELECT customer_id, join_date FROM customers_quarantine WHERE reason = 'duplicate_customer'")
    # the second row of customer 5 is the one quarantined (the first row wins)
    assert list(dup["customer_id"]) == ["5"] and dup["join_date"].iloc[0].startswith("2023-04-04")
    rec = workbook.df("SELECT code, rows FROM coupons_reconciliation").set_index("code")["rows"].to_dict()
    assert rec == {
        "bad_date": 1,
        "missing_customer": 0,
        "unknown_customer": 1,
        "unknown_status": 1,
        "duplicate": 1,
        "clean": 825,
    }
    assert sum(rec.values()) == 829  # every transaction row is used or quarantined
    q = workbook.df("SELECT reason, transaction_id FROM coupons_quarantine ORDER BY _row_id")
    assert list(q["reason"]) == ["bad_date", "unknown_customer", "unknown_status", "duplicate"]


def test_coupon_features_match_the_generator_rows(workbook: DuckDBBackend) -> None:
    ing = workbook.ingest  # type: ignore[attr-defined]
    cf = build_customer_features(workbook, ing)
    assert cf.as_of == datetime(2024, 7, 15)  # the day after the last date (2024-07-14)
    f = cf.frame.set_index("customer_id")
    sheets, truth = GEN.build()
    clean_tx = [r for r in sheets["transactions"][1:826] if isinstance(r[2], datetime)]
    n = Counter(r[1] for r in clean_tx)
    burned = Counter(r[1] for r in clean_tx if r[3] == "burned")
    joins = {r[0]: r[1] for r in sheets["customers"][1:151]}
    for cid in (1, 2, 51, 52, 101, 150):
        row = f.loc[str(cid)]
        assert row["coupon_transactions"] == n[cid]
        assert row["coupon_burned"] == burned[cid]
        assert row["coupon_subscribed"] == n[cid] - burned[cid]
        days = (datetime(2024, 7, 15) - joins[cid]).days
        assert row["days_since_join"] == days
        assert row["coupon_per_month"] == pytest.approx(n[cid] * 30.4375 / days)
        mine = [r for r in clean_tx if r[1] == cid]
        last = max((r[2] for r in mine), default=joins[cid])
        assert row["days_since_last_coupon"] == (datetime(2024, 7, 15) - last).days
    # every registered column has a description and a unit
    reg = cf.registry_frame()
    assert set(reg["feature"]) == set(cf.frame.columns) - {"customer_id"}
    assert (reg["description"].str.len() > 10).all() and (reg["unit"].str.len() > 0).all()
    # the planted groups differ the way they were made
    groups = pd.Series(truth).rename("group")
    by = f.join(groups.set_axis(groups.index.astype(str))).groupby("group")
    assert by["coupon_burn_rate"].mean()["burner"] > 0.8 > 0.2 > by["coupon_burn_rate"].mean()["collector"]
    assert by["coupon_transactions"].mean()["dormant"] < 2


def test_csv_customer_table(backend: DuckDBBackend, write_file: object, tmp_path: Path) -> None:
    rows = ["Customer ID,Gender,Age,Signup Date,Email,Postcode,Tier"]
    rng = np.random.default_rng(0)
    for i in range(80):
        rows.append(
            f"C{i},{'F' if i % 2 else 'M'},{20 + i % 40},2023-0{1 + i % 9}-15,u{i}@x.org,{10000 + i % 7},"
            f"{['gold', 'silver', ''][i % 3]}"
        )
    rows.append(",F,30,2023-01-01,nobody@x.org,10001,gold")  # no id
    path = write_file("customers.csv", "\n".join(rows) + "\n")  # type: ignore[operator]
    cfg = CustomersConfig(categorical=["Postcode"])
    ing = ingest_customers(backend, [path], cfg, work=tmp_path / "w")
    kinds = {a.name: a.kind for a in ing.attributes}
    assert ing.id_column == "Customer ID"
    assert kinds == {
        "Gender": "categorical",
        "Age": "numeric",
        "Signup Date": "date",
        "Postcode": "categorical",
        "Tier": "categorical",
    }
    assert "Email" in ing.skipped and "identifies individuals" in ing.skipped["Email"]
    cl = clean_customers(backend, ing, cfg)
    assert (cl.customers.input_rows, cl.customers.clean_rows, cl.customers.quarantined_rows) == (81, 80, 1)
    cf = build_customer_features(backend, ing, datetime(2024, 1, 1), cfg)
    f = cf.frame.set_index("customer_id")
    assert f.loc["C3", "Age"] == 23.0 and f.loc["C3", "Postcode"] == "10003"
    assert f.loc["C0", "days_since_signup"] == (datetime(2024, 1, 1) - datetime(2023, 1, 15)).days
    assert cf.numeric == ["Age", "days_since_signup"] and cf.categorical == ["Gender", "Postcode", "Tier"]
    assert pd.isna(f.loc["C2", "Tier"])  # empty cell: missing, not a value
    del rng


def test_bad_settings_name_the_fix(backend: DuckDBBackend, tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"did you mean 'customers'"):
        ingest_customers(backend, [LOOKALIKE], CustomersConfig(sheet="customer"), work=tmp_path)
    with pytest.raises(SchemaError, match=r"did you mean 'customer_id'"):
        ingest_customers(backend, [LOOKALIKE], CustomersConfig(id_column="customerid_"), work=tmp_path)
    p = tmp_path / "x.csv"
    p.write_text("name,city\na,b\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="id_column"):
        ingest_customers(backend, [p], work=tmp_path)


def test_customer_workbook_detection(tmp_path: Path) -> None:
    from openpyxl import Workbook

    assert is_customer_workbook(LOOKALIKE)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "customers"
    ws.append(["customer_id", "InvoiceNo", "UnitPrice"])
    ws.append([1, "A1", 2.5])
    wb.save(tmp_path / "orders.xlsx")
    assert not is_customer_workbook(tmp_path / "orders.xlsx")
    assert not is_customer_workbook(ROOT / "README.md")


def test_composition_shares_exact() -> None:
    frame = pd.DataFrame(
        {
            "gender": ["Male", "Male", "Female", "Male", "Female", "Female", None],
            "city": ["Cairo", "Cairo", "Cairo", "Cairo", "Giza", "Giza", "Giza"],
        }
    )
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    c = segment_composition(frame, labels, ["gender", "city"])
    got = {(r.segment, r.attribute, r.value): (r.customers, r.share) for r in c.itertuples()}
    assert got[(0, "gender", "Male")] == (2, pytest.approx(2 / 3))
    assert got[(0, "gender", "Female")] == (1, pytest.approx(1 / 3))
    assert got[(0, "city", "Cairo")] == (3, 1.0)
    assert got[(1, "gender", "(missing)")] == (1, 0.25)
    assert got[(1, "city", "Giza")] == (3, 0.75)
    row = c[(c["segment"] == 1) & (c["value"] == "Giza")].iloc[0]
    assert row["overall_share"] == pytest.approx(3 / 7) and row["lift"] == pytest.approx(0.75 / (3 / 7))
    assert (c.groupby(["segment", "attribute"])["share"].sum() == 1.0).all()
    assert composition_summary(c) == {0: "100 % Cairo · 67 % Male", 1: "75 % Giza · 50 % Female"}
    # values beyond max_values are summed as (other)
    c2 = segment_composition(frame.assign(v=list("abcdefg")), labels, ["v"], max_values=3)
    assert set(c2["value"]) == {"a", "b", "(other)"}


# ------------------------------------------------------------------------------------------ whole runs


@pytest.fixture(scope="module")
def lookalike_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("coupons") / "run"
    run([LOOKALIKE], out)
    return out


def test_run_on_the_lookalike_workbook(lookalike_run: Path) -> None:
    m = json.loads((lookalike_run / "manifest.json").read_text(encoding="utf-8"))
    src = m["rows"]["by_source"]
    assert src["customers"]["input_rows"] == src["customers"]["clean_rows"] + src["customers"]["quarantined_rows"]
    assert (src["customers"]["input_rows"], src["customers"]["clean_rows"]) == (152, 150)
    assert (src["coupons"]["input_rows"], src["coupons"]["clean_rows"]) == (829, 825)
    assert m["inputs"][0]["role"] == "customers"
    assert not m["warnings"], m["warnings"]  # behaviour decides, not gender or city
    seg = pd.read_csv(lookalike_run / "segments.csv", dtype={"customer_id": str})
    assert len(seg) == 150 and {"city", "gender", "coupon_burned", "days_since_join"} <= set(seg.columns)
    assert not any("~" in c for c in seg.columns)  # the encoded columns stay inside the model
    _, truth = GEN.build()
    t = seg["customer_id"].astype(int).map(truth)
    assert adjusted_rand_score(t, seg["segment"]) >= 0.8
    q = pd.read_parquet(lookalike_run / "quarantine.parquet")
    assert Counter(q["source_table"]) == {"customers": 2, "coupons": 4}
    html = (lookalike_run / "report.html").read_text(encoding="utf-8")
    assert 'id="attributes"' in html and "Composition of the segments" in html and "<i>Attributes:</i>" in html
    model = json.loads((lookalike_run / "model" / "segmenter.json").read_text(encoding="utf-8"))
    assert "gender~1" in model["preprocessing"]["features"]
    # no order values: the banner table is made from config rates with the AOV left empty (and says so); the
    # impact scenarios, which need order values, are skipped and say why
    b = pd.read_csv(lookalike_run / "banners.csv")
    assert len(b) == m["segmentation"]["k"] and b["customers"].sum() == 150
    assert b["aov"].isna().all() and (b["recommendation"] == "no order value").all()
    assert b["break_even_aov"].tolist() == pytest.approx([0.63 / (0.02 * 0.3)] * len(b))
    assert b["featured_products"].str.startswith("merchants: ").all()
    assert any("no order values in this run" in n for n in m["notes"])
    assert any("impact scenarios skipped" in n for n in m["notes"])
    # shop insights from the coupon transactions, reconciled with the clean rows
    ins = json.loads((lookalike_run / "insights.json").read_text(encoding="utf-8"))
    assert ins["source"] == "coupons" and m["files"]["insights"] == "insights.json"
    funnel = {r["stage"]: (r["customers"], r["transactions"]) for r in ins["coupon_funnel"]}
    assert funnel["customers in the table"] == (150, 825)
    assert funnel["burned a coupon"][1] == int(seg["coupon_burned"].sum())
    assert funnel["took a coupon"][0] == int((seg["coupon_transactions"] > 0).sum())
    assert sum(r["transactions"] for r in ins["coupon_weekdays"]) == 825
    genders = [r for r in ins["attribute_activity"] if r["attribute"] == "gender"]
    assert {r["value"]: r["customers"] for r in genders} == seg["gender"].value_counts().to_dict()
    assert 'id="insights"' in html and "Coupons: customers" in html and 'id="banners"' in html


@pytest.mark.slow
def test_cli_run_on_the_workbook(lookalike_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    p = subprocess.run(
        [sys.executable, "-m", "shopseg.cli", "run", str(LOOKALIKE), "--out", str(out), "-q", "--k", "3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    assert "customers: 152 input rows = 150 clean + 2 quarantined" in p.stdout
    assert "coupons: 829 input rows = 825 clean + 4 quarantined" in p.stdout


def _orders_and_customers(tmp: Path, *, gender_is_truth: bool) -> tuple[Path, Path, pd.DataFrame]:
    from shopseg.datasets import generate_shop

    shop = generate_shop(400, seed=3)
    orders = tmp / "orders.parquet"
    shop.transactions.to_parquet(orders)
    truth = shop.truth.assign(customer_id=shop.truth["customer_id"].astype(str))
    rng = np.random.default_rng(4)
    ids = truth["customer_id"].tolist()
    if gender_is_truth:
        gender = np.where(truth["segment"].isin(["champions", "regulars"]), "Female", "Male")
    else:
        gender = rng.choice(["Female", "Male"], len(ids))
    cust = pd.DataFrame(
        {
            "CustomerID": [*ids, "99999"],  # one customer without orders
            "Gender": [*gender, "Male"],
            "City": [*rng.choice(["Cairo", "Giza", "Luxor"], len(ids)), "Giza"],
        }
    )
    path = tmp / "customers.csv"
    cust.to_csv(path, index=False)
    return orders, path, truth


@pytest.mark.slow
def test_run_orders_with_a_customer_table(tmp_path: Path) -> None:
    orders, customers, truth = _orders_and_customers(tmp_path, gender_is_truth=False)
    res = run([orders], tmp_path / "out", customers=[customers])
    m = res.manifest
    match = m["customers_table"]["match"]
    assert match == {
        "run_customers": 400,
        "with_attributes": 400,
        "without_attributes": 0,
        "table_customers_not_in_run": 1,
    }
    assert m["rows"]["by_source"]["customers"] == {
        "input_rows": 401,
        "clean_rows": 401,
        "quarantined_rows": 0,
        "by_rule": {"missing_customer": 0, "duplicate_customer": 0},
    }
    # by default (segment_on = auto) the attributes describe the segments and do not make them: the planted
    # behaviour is recovered as without a customer table (with both random attributes in the input it was not:
    # adjusted Rand 0.27, k = 2)
    assert m["customers_table"]["segment_categorical"] == []
    seg = res.segments.merge(truth, on="customer_id", suffixes=("", "_t"))
    assert adjusted_rand_score(seg["segment_t"], seg["segment"]) >= 0.9
    assert not any("decides the segments" in w for w in m["warnings"])
    assert {d["attribute"] for d in m["customers_table"]["dominance"]} == {"Gender", "City"}
    assert {"Gender", "City"} <= set(res.segments.columns)
    banners = pd.read_csv(tmp_path / "out" / "banners.csv")
    assert len(banners) == len(res.profiles) and banners["recommendation"].isin(["keep internal", "sell", "mix"]).all()
    assert (banners["ratio_low"] <= banners["ratio"]).all() and (banners["ratio"] <= banners["ratio_high"]).all()
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert 'id="banners"' in html and 'id="impact"' in html and 'id="attributes"' in html


def test_warning_when_gender_alone_decides(tmp_path: Path) -> None:
    # a customer table that is only gender plus noise, weighted heavily: the segments become the genders
    rng = np.random.default_rng(2)
    n = 300
    path = tmp_path / "c.csv"
    pd.DataFrame(
        {"customer_id": [f"c{i}" for i in range(n)], "gender": rng.choice(["F", "M"], n), "score": rng.normal(size=n)}
    ).to_csv(path, index=False)
    cfg = load_config(None, {"segment.k": 2, "customers.categorical_weight": 3.0})
    res = run([], tmp_path / "out", cfg, customers=[path])
    warn = [w for w in res.manifest["warnings"] if "decides the segments" in w]
    assert warn and "gender" in warn[0]
    comp = res.segments.groupby("segment")["gender"].agg(lambda s: s.value_counts(normalize=True).max())
    assert (comp == 1.0).all()


def test_segment_on_unknown_attribute(tmp_path: Path) -> None:
    cfg = load_config(None, {"customers.segment_on": ["shoe_size"]})
    with pytest.raises(ConfigError, match="shoe_size"):
        run([LOOKALIKE], tmp_path / "out", cfg)


@pytest.mark.slow
def test_run_on_the_real_coupon_workbook(shared_data: Path, tmp_path: Path) -> None:
    book = shared_data / "coupons_egypt" / "raw" / "E-commerce_data.xlsx"
    res = run([book], tmp_path / "out")
    m = res.manifest
    src = m["rows"]["by_source"]
    assert src["customers"] == {
        "input_rows": 1000,
        "clean_rows": 1000,
        "quarantined_rows": 0,
        "by_rule": {"missing_customer": 0, "duplicate_customer": 0},
    }
    assert (src["coupons"]["input_rows"], src["coupons"]["clean_rows"]) == (5000, 5000)
    seg = res.segments
    assert len(seg) == 1000 and seg["city"].notna().all()
    assert set(seg["gender"]) == {"Male", "Female"}
    assert Counter(seg["gender"]) == {"Male": 509, "Female": 491}  # gender 1/2 = 509/491 (SOURCE.md)
    assert seg["city"].nunique() == 20 and "Cairo" in set(seg["city"])
    # burned + subscribed = all coupon transactions, per customer and in all (2,516 burned, SOURCE.md)
    assert int(seg["coupon_burned"].sum()) == 2516 and int(seg["coupon_subscribed"].sum()) == 2484
    assert (seg["coupon_burned"] + seg["coupon_subscribed"] == seg["coupon_transactions"]).all()
    assert len(res.profiles) >= 2
    # issue 3's "Done when": insights and a banner table too, counts reconciled
    ins = json.loads((tmp_path / "out" / "insights.json").read_text(encoding="utf-8"))
    funnel = {r["stage"]: (r["customers"], r["transactions"]) for r in ins["coupon_funnel"]}
    assert funnel["customers in the table"] == (1000, 5000) and funnel["burned a coupon"][1] == 2516
    assert funnel["took a coupon"][0] == int((seg["coupon_transactions"] > 0).sum())
    assert sum(r["transactions"] for r in ins["coupon_months"]) == 5000
    genders = {r["value"]: r["coupon_transactions"] for r in ins["attribute_activity"] if r["attribute"] == "gender"}
    assert sum(genders.values()) == 5000
    assert genders == seg.groupby("gender")["coupon_transactions"].sum().astype(int).to_dict()
    b = pd.read_csv(tmp_path / "out" / "banners.csv")
    assert len(b) == len(res.profiles) and b["customers"].sum() == 1000
    assert (b["recommendation"] == "no order value").all() and b["break_even_aov"].notna().all()
    assert b["best_hours"].str.contains("by weekday").all()  # the workbook's dates have no time of day


def test_workbook_with_the_transactions_sheet_first_is_still_a_customer_source(tmp_path: Path) -> None:
    from openpyxl import Workbook

    from shopseg.ingest.events import split_inputs

    sheets, _ = GEN.build()
    wb = Workbook()
    assert wb.active is not None
    wb.remove(wb.active)
    for name in ("transactions", "customers", "genders", "cities", "branches", "merchants"):
        ws = wb.create_sheet(name)
        for row in sheets[name]:
            ws.append(row)
    path = tmp_path / "reordered.xlsx"
    wb.save(path)
    assert split_inputs([path]) == {"orders": [], "events": [], "customers": [str(path)]}
    b = DuckDBBackend(tmp_path / "t.duckdb")
    try:
        ing = ingest_customers(b, [path], work=tmp_path / "w")
        assert ing.sheet == "customers" and ing.activity is not None and ing.activity.sheet == "transactions"
    finally:
        b.close()


def test_workbook_banners_need_an_order_value(tmp_path: Path) -> None:
    # the coupon data has no amounts: with [banners] aov given, the banner table is made from config rates
    cfg = load_config(None, {"banners.aov": 50.0, "banners.bootstrap": 0})
    res = run([LOOKALIKE], tmp_path / "out", cfg)
    b = pd.read_csv(tmp_path / "out" / "banners.csv")
    assert len(b) == len(res.profiles) and (b["aov"] == 50.0).all()
    assert (b["rates_from"] == "ctr: config, conversion: config, aov: config").all()
    # 0.02 x 50 x 0.3 = 0.30 per click against a CPC of 0.63: sell
    assert b["ratio"].tolist() == pytest.approx([0.02 * 50 * 0.3 / 0.63] * len(b))
    assert (b["recommendation"] == "sell").all()
