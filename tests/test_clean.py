"""Tests of shopseg.clean: one planted row per rule, reconciliation, returns, outliers, and the real data."""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest

from shopseg.backends import DuckDBBackend
from shopseg.clean import RULES, CleanResult, rules_for
from shopseg.config import CleanConfig
from shopseg.errors import IntegrityError
from shopseg.ingest import IngestResult

IngestClean = Callable[..., tuple[IngestResult, CleanResult]]
Write = Callable[..., Path]

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
# One planted row per rule; the order id (unique but for the duplicate) names the row in the assertions.
PLANTED = [
    ("536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom", None),
    ("536366,71053,WHITE METAL LANTERN,6,2010-12-01 08:28:00,3.39,17850.0,United Kingdom", None),
    ("536367,22633,HAND WARMER UNION JACK,6,2010-12-02 08:28:00,1.85,17850.0,United Kingdom", None),
    ("536368,84879,BIRD ORNAMENT,32,2010-12-01 08:34:00,1.69,13047.0,United Kingdom", None),
    ("536369,22960,JAM MAKING SET,six,2010-12-01 08:34:00,4.25,13047.0,United Kingdom", "bad_number"),
    ("536370,21756,BATH BUILDING BLOCK,3,2010-12-01 08:35:00,5.95,,United Kingdom", "missing_customer"),
    ("C536371,22633,HAND WARMER UNION JACK,-2,2010-12-03 09:00:00,1.85,17850.0,United Kingdom", "cancellation"),
    ("c536372,22728,ALARM CLOCK BAKELIKE PINK,-1,2010-12-03 09:05:00,3.75,13047.0,United Kingdom", "cancellation"),
    # 'A' adjustment with the non-product code 'B': the earlier rule (adjustment) wins
    ("A563185,B,Adjust bad debt,1,2011-08-12 14:50:00,11062.06,12346.0,United Kingdom", "adjustment"),
    ("536373,POST,POSTAGE,3,2010-12-01 09:00:00,18.00,12583.0,France", "non_product"),
    ("536374,dot,DOTCOM POSTAGE,1,2010-12-01 09:01:00,569.77,14096.0,United Kingdom", "non_product"),
    ("536375,m,Manual,1,2010-12-01 09:02:00,0.85,14096.0,United Kingdom", "non_product"),
    ("536376,BANK CHARGES,Bank Charges,1,2010-12-01 09:03:00,15.00,14096.0,United Kingdom", "non_product"),
    (
        "536377,GIFT_0001_10,Dotcomgift shop gift voucher £10.00,1,2010-12-01 09:04:00,8.51,14096.0,United Kingdom",
        "non_product",
    ),
    ("536378,22139,RETROSPOT TEA SET,-12,2010-12-01 09:05:00,4.95,14096.0,United Kingdom", "non_positive_quantity"),
    ("536379,22423,REGENCY CAKESTAND,1,2010-12-01 09:06:00,0,14096.0,United Kingdom", "non_positive_price"),
    ("536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom", "duplicate"),
    # Superstore-style order id: starts with 'C' but is not a cancellation
    ("CA-2016-152156,FUR-BO-10001798,Bush Somerset Bookcase,2,2016-11-08 00:00:00,130.98,CG-12520,United States", None),
    ("536380,21730,GLASS STAR FROSTED,6,2010-12-01 09:02:00,4.25,17850.0,United Kingdom", None),
    ("536381,22752,SET 7 BABUSHKA NESTING BOXES,2,2010-12-01 09:10:00,7.65,15100.0,United Kingdom", None),
    ("536382,22745,POPPY'S PLAYHOUSE BEDROOM,6,not a date,2.10,15100.0,United Kingdom", "bad_date"),
    # a cancellation without a customer: missing_customer comes first
    ("C536383,POST,POSTAGE,-1,2010-12-03 10:00:00,18.00,,France", "missing_customer"),
    # a return of something the customer bought only later: not matched
    ("C536384,22752,SET 7 BABUSHKA NESTING BOXES,-1,2010-12-01 09:00:00,7.65,15100.0,United Kingdom", "cancellation"),
]
CSV_TEXT = HEADER + "".join(line + "\n" for line, _ in PLANTED)
CLEAN_ORDERS = ["536365", "536366", "536367", "536368", "CA-2016-152156", "536380", "536381"]


def expected_by_reason() -> dict[str, list[int]]:
    """reason → 1-based row ids of the planted rows."""
    out: dict[str, list[int]] = {}
    for i, (_, reason) in enumerate(PLANTED, start=1):
        if reason is not None:
            out.setdefault(reason, []).append(i)
    return out


def quarantined(backend: DuckDBBackend) -> dict[str, list[int]]:
    df = backend.df("SELECT reason, _row_id FROM quarantine WHERE _row_id IS NOT NULL ORDER BY _row_id")
    return {str(r): [int(x) for x in g["_row_id"]] for r, g in df.groupby("reason")}


def recon(result: CleanResult) -> dict[str, int]:
    return {str(r.code): int(r.rows) for r in result.reconciliation.itertuples()}


@pytest.fixture
def planted(write_file: Write) -> Path:
    return write_file("planted.csv", CSV_TEXT, encoding="cp1252")


# --------------------------------------------------------------------------------------------- planted rules


def test_each_rule_catches_exactly_its_planted_rows(
    planted: Path, ingest_clean: IngestClean, backend: DuckDBBackend
) -> None:
    ingest, result = ingest_clean(planted)
    assert ingest.input_rows == len(PLANTED) == 23
    assert quarantined(backend) == expected_by_reason()
    assert result.clean_rows == len(CLEAN_ORDERS) == 7
    assert result.quarantined_rows == 16
    assert result.input_rows == result.clean_rows + result.quarantined_rows
    clean = backend.df("SELECT * FROM transactions")
    assert sorted(clean["order_id"]) == sorted(CLEAN_ORDERS)
    assert list(clean.columns) == [
        "customer_id",
        "order_id",
        "product_id",
        "product_name",
        "category",
        "quantity",
        "unit_price",
        "ts",
        "country",
    ]


def test_reconciliation_table(planted: Path, ingest_clean: IngestClean, backend: DuckDBBackend) -> None:
    _, result = ingest_clean(planted)
    expected = {
        "bad_date": 1,
        "bad_number": 1,
        "missing_customer": 2,
        "cancellation": 3,
        "adjustment": 1,
        "non_product": 5,
        "non_positive_quantity": 1,
        "non_positive_price": 1,
        "duplicate": 1,
        "malformed_line": 0,
        "clean": 7,
    }
    assert recon(result) == expected
    stored = backend.df("SELECT code, rows, share FROM reconciliation")
    assert dict(zip(stored["code"], stored["rows"], strict=True)) == expected
    assert stored.loc[stored["code"] == "clean", "share"].iloc[0] == pytest.approx(7 / 23)
    assert result.as_dict()["by_rule"]["non_product"] == 5
    assert "clean" not in result.as_dict()["by_rule"]


def test_quarantine_keeps_raw_values(planted: Path, ingest_clean: IngestClean, backend: DuckDBBackend) -> None:
    ingest_clean(planted)
    row = backend.df("SELECT * FROM quarantine WHERE reason = 'bad_number'").iloc[0]
    assert (row["InvoiceNo"], row["Quantity"], row["CustomerID"]) == ("536369", "six", "13047.0")
    bad = backend.df("SELECT * FROM quarantine WHERE reason = 'bad_date'").iloc[0]
    assert bad["InvoiceDate"] == "not a date"
    assert str(bad["source"]).endswith("planted.csv")
    gift = backend.scalar("SELECT Description FROM quarantine WHERE StockCode = 'GIFT_0001_10'")
    assert gift == "Dotcomgift shop gift voucher £10.00"


def test_parquet_files_are_read_in_place_with_row_ids_across_files(
    tmp_path: Path, ingest_clean: IngestClean, backend: DuckDBBackend
) -> None:
    """Parquet-only input is a view over the files (no copy); rows are numbered file by file in input order, so
    the planted rows keep their ids and the quarantine finds each one's raw values in the right file."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.read_csv(io.StringIO(CSV_TEXT), dtype=str, keep_default_na=False)
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pandas(frame.iloc[:10], preserve_index=False), first)
    pq.write_table(pa.Table.from_pandas(frame.iloc[10:], preserve_index=False), second)
    ingest, result = ingest_clean([first, second])
    assert (
        backend.scalar("SELECT table_type FROM information_schema.tables WHERE table_name = 'raw_transactions'")
        == "VIEW"
    )
    assert "rowid" not in [c for c, _ in backend.columns("raw_transactions")]
    assert ingest.input_rows == len(PLANTED)
    assert quarantined(backend) == expected_by_reason()
    assert result.input_rows == result.clean_rows + result.quarantined_rows
    row = backend.df("SELECT * FROM quarantine WHERE reason = 'bad_number'").iloc[0]  # row 5, first file
    assert (row["InvoiceNo"], row["Quantity"], str(row["source"]).endswith("a.parquet")) == ("536369", "six", True)
    bad = backend.df("SELECT * FROM quarantine WHERE reason = 'bad_date'").iloc[0]  # row 21, second file
    assert (bad["_row_id"], bad["InvoiceDate"], str(bad["source"]).endswith("b.parquet")) == (21, "not a date", True)


def test_superstore_order_id_is_not_a_cancellation(
    planted: Path, ingest_clean: IngestClean, backend: DuckDBBackend
) -> None:
    ingest_clean(planted)
    row = backend.df("SELECT * FROM transactions WHERE order_id = 'CA-2016-152156'")
    assert len(row) == 1
    assert (row["customer_id"].iloc[0], row["quantity"].iloc[0]) == ("CG-12520", 2.0)


def test_first_rule_wins(planted: Path, ingest_clean: IngestClean, backend: DuckDBBackend) -> None:
    ingest_clean(planted)
    reasons = dict(backend.con.execute("SELECT InvoiceNo, reason FROM quarantine").fetchall())
    assert reasons["A563185"] == "adjustment"  # also a non-product code 'B'
    assert reasons["C536383"] == "missing_customer"  # also a cancellation and 'POST'
    assert reasons["C536371"] == "cancellation"  # also a negative quantity
    # every row sits in exactly one place
    n = backend.scalar("SELECT count(*) FROM quarantine") + backend.scalar("SELECT count(*) FROM transactions")
    assert n == len(PLANTED)
    assert backend.scalar("SELECT count(DISTINCT _row_id) FROM quarantine") == 16


def test_rule_order_is_documented() -> None:
    assert [r.code for r in RULES] == [
        "bad_date",
        "bad_number",
        "missing_customer",
        "cancellation",
        "adjustment",
        "non_product",
        "non_positive_quantity",
        "non_positive_price",
        "duplicate",
    ]


def test_configurable_non_product_codes(planted: Path, ingest_clean: IngestClean, backend: DuckDBBackend) -> None:
    _, result = ingest_clean(planted, clean=CleanConfig(non_product_codes=["22139", "post"]))
    q = quarantined(backend)
    # 22139 (negative quantity too) is now a non-product; POST stays one; DOT, m, BANK CHARGES become clean;
    # the gift pattern still applies
    assert q["non_product"] == [10, 14, 15]
    assert "non_positive_quantity" not in q
    assert result.clean_rows == 7 + 3
    assert recon(result)["non_product"] == 3


def test_non_product_patterns_can_be_emptied(planted: Path, ingest_clean: IngestClean, backend: DuckDBBackend) -> None:
    _, result = ingest_clean(planted, clean=CleanConfig(non_product_patterns=[]))
    assert quarantined(backend)["non_product"] == [10, 11, 12, 13]
    assert result.clean_rows == 8


def test_rules_without_their_columns_are_skipped(
    write_file: Write, ingest_clean: IngestClean, backend: DuckDBBackend
) -> None:
    # no order id and no product: cancellation/adjustment/non_product cannot apply and are not reported
    text = (
        "customer,date,qty,price\n"
        "c1,2011-01-16 10:00:00,1,2.0\n"
        "c1,2011-01-16 10:00:00,1,2.0\n"
        "c2,2011-01-16 11:00:00,0,2.0\n"
        "c3,2011-01-16 12:00:00,1,-1\n"
    )
    _, result = ingest_clean(write_file("min.csv", text))
    codes = recon(result)
    assert "cancellation" not in codes and "non_product" not in codes and "adjustment" not in codes
    assert codes["duplicate"] == 1 and codes["non_positive_quantity"] == 1 and codes["non_positive_price"] == 1
    assert codes["clean"] == 1


def test_rules_for_quotes_codes() -> None:
    rules = {r.code: r for r in rules_for(CleanConfig(non_product_codes=["O'NEIL"], non_product_patterns=[]))}
    assert "'O''NEIL'" in rules["non_product"].condition


# ----------------------------------------------------------------------------------------------- returns


def test_returns_matched_to_earlier_purchase(planted: Path, ingest_clean: IngestClean, backend: DuckDBBackend) -> None:
    ingest_clean(planted)
    returns = backend.df("SELECT * FROM returns ORDER BY _row_id")
    assert list(returns["_row_id"]) == [7, 8, 23]
    assert list(returns["customer_id"]) == ["17850", "13047", "15100"]
    assert list(returns["product_id"]) == ["22633", "22728", "22752"]
    assert list(returns["quantity"]) == [2.0, 1.0, 1.0]
    # 17850 bought 22633 the day before; 13047 never bought 22728; 15100 bought 22752 only after returning it
    assert list(returns["matched"]) == [True, False, False]


# ------------------------------------------------------------------------------------------------ outliers


def _spenders(write_file: Write) -> Path:
    lines = [HEADER]
    for i in range(1, 21):  # spends 10, 20, … 200
        lines.append(f"{600000 + i},P{i},ITEM,{i},2011-01-{1 + i % 28:02d} 10:00:00,10.00,{20000 + i},UK\n")
    lines.append("699999,PX,ITEM,1000,2011-02-01 10:00:00,100.00,WHALE,UK\n")  # spends 100,000
    lines.append("699998,PY,ITEM,10,2011-02-02 10:00:00,100.00,WHALE,UK\n")
    return write_file("spend.csv", "".join(lines))


def test_outliers_remove(write_file: Write, ingest_clean: IngestClean, backend: DuckDBBackend) -> None:
    _, result = ingest_clean(_spenders(write_file), clean=CleanConfig(outliers="remove"))
    assert result.outlier_customers == ["WHALE"]
    assert recon(result)["outlier_customer"] == 2
    assert result.clean_rows == 20
    assert backend.scalar("SELECT count(*) FROM transactions WHERE customer_id = 'WHALE'") == 0
    q = backend.df("SELECT InvoiceNo FROM quarantine WHERE reason = 'outlier_customer' ORDER BY InvoiceNo")
    assert list(q["InvoiceNo"]) == ["699998", "699999"]


@pytest.mark.parametrize("method", ["mad", "iqr"])
def test_outliers_flag_keeps_rows(
    method: Literal["mad", "iqr"], write_file: Write, ingest_clean: IngestClean, backend: DuckDBBackend
) -> None:
    cfg = CleanConfig(outliers="flag", outlier_method=method)
    _, result = ingest_clean(_spenders(write_file), clean=cfg)
    assert result.outlier_customers == ["WHALE"]
    assert "outlier_customer" not in recon(result)
    assert result.clean_rows == 22
    assert backend.scalar("SELECT count(*) FROM transactions WHERE customer_id = 'WHALE'") == 2


def test_outliers_off(write_file: Write, ingest_clean: IngestClean) -> None:
    _, result = ingest_clean(_spenders(write_file), clean=CleanConfig(outliers="off"))
    assert result.outlier_customers == []
    assert "outlier_customer" not in recon(result)
    assert result.clean_rows == 22


# ------------------------------------------------------------------------------------------ malformed lines


def test_malformed_line_reconciles(write_file: Write, ingest_clean: IngestClean, backend: DuckDBBackend) -> None:
    bad = "536999,22728,ALARM CLOCK,24,2010-12-01 08:45:00,3.75,12583.0,France,EXTRA"
    text = HEADER + PLANTED[0][0] + "\n" + bad + "\n" + PLANTED[1][0] + "\n"
    ingest, result = ingest_clean(write_file("mal.csv", text))
    assert ingest.input_rows == 3
    assert recon(result)["malformed_line"] == 1
    assert result.clean_rows == 2 and result.quarantined_rows == 1
    row = backend.df("SELECT * FROM quarantine WHERE reason = 'malformed_line'").iloc[0]
    assert row["raw_line"] == bad
    assert str(row["source"]).endswith("mal.csv")


def test_lost_rows_raise_integrity_error(planted: Path, ingest_clean: IngestClean, backend: DuckDBBackend) -> None:
    from shopseg.clean import clean_transactions

    ingest, _ = ingest_clean(planted)
    ingest.raw_rows += 1  # pretend one row vanished between ingest and clean
    with pytest.raises(IntegrityError, match="do not reconcile"):
        clean_transactions(backend, ingest, CleanConfig())


# ------------------------------------------------------------------------------------ the real sample


def test_real_sample_reconciles(sample_csv: Path, ingest_clean: IngestClean, backend: DuckDBBackend) -> None:
    ingest, result = ingest_clean(sample_csv)
    with gzip.open(sample_csv, "rt", encoding="cp1252") as fh:
        data_lines = sum(1 for _ in fh) - 1
    assert ingest.input_rows == data_lines == result.input_rows
    assert result.input_rows == result.clean_rows + result.quarantined_rows
    assert backend.scalar("SELECT count(*) FROM transactions") == result.clean_rows
    assert backend.scalar("SELECT count(*) FROM quarantine") == result.quarantined_rows
    per_reason = dict(backend.con.execute("SELECT reason, count(*) FROM quarantine GROUP BY 1").fetchall())
    table = {k: v for k, v in recon(result).items() if k != "clean" and v > 0}
    assert per_reason == table
    stored = dict(backend.con.execute("SELECT code, rows FROM reconciliation").fetchall())
    assert stored == recon(result)
    assert (
        backend.scalar(
            "SELECT count(*) FROM quarantine WHERE reason = 'cancellation' AND NOT starts_with(InvoiceNo, 'C')"
        )
        == 0
    )


def test_real_sample_counts_match_pandas(sample_csv: Path, ingest_clean: IngestClean, backend: DuckDBBackend) -> None:
    """The rule counts recomputed independently with pandas from the raw text."""
    _, result = ingest_clean(sample_csv)
    raw = pd.read_csv(sample_csv, encoding="cp1252", dtype=str, keep_default_na=False)
    dates = pd.to_datetime(raw["InvoiceDate"], format="%m/%d/%Y %H:%M", errors="coerce")
    qty = pd.to_numeric(raw["Quantity"], errors="coerce")
    price = pd.to_numeric(raw["UnitPrice"], errors="coerce")
    assert dates.notna().all() and qty.notna().all() and price.notna().all()
    no_customer = raw["CustomerID"].str.strip() == ""
    cancel = raw["InvoiceNo"].str.match(r"^[Cc]\d") & ~no_customer
    counts = recon(result)
    assert counts["bad_date"] == 0 and counts["bad_number"] == 0
    assert counts["missing_customer"] == int(no_customer.sum())
    assert counts["cancellation"] == int(cancel.sum())
    # the text decodes as cp1252: '£'-free descriptions stay ASCII, none hold U+FFFD
    assert backend.scalar("SELECT count(*) FROM transactions WHERE product_name LIKE '%\ufffd%'") == 0
    # customer ids written as floats are normalised
    assert backend.scalar("SELECT count(*) FROM transactions WHERE customer_id LIKE '%.0'") == 0


# ------------------------------------------------------------------------------------------- full data


@pytest.mark.slow
def test_full_online_retail_parquet_and_raw_csvs_agree(shared_data: Path, tmp_path: Path) -> None:
    from shopseg.backends import DuckDBBackend as Backend
    from shopseg.clean import clean_transactions
    from shopseg.config import InputConfig
    from shopseg.ingest import ingest_transactions

    parquet = shared_data / "online_retail" / "online_retail.parquet"
    tar = shared_data / "online_retail" / "raw" / "retail-data_by-day_csv.tar.gz"
    if not parquet.is_file() or not tar.is_file():
        pytest.skip("full Online Retail data not found")
    raw_dir = tmp_path / "by-day"
    raw_dir.mkdir()
    with tarfile.open(tar, "r:gz") as tf:
        tf.extractall(raw_dir, filter="data")
    csvs = sorted(raw_dir.rglob("*.csv"))
    assert len(csvs) == 305

    results: dict[str, tuple[IngestResult, CleanResult]] = {}
    for name, inputs in (("parquet", [parquet]), ("csv", [raw_dir])):
        backend = Backend(tmp_path / f"{name}.duckdb")
        try:
            ing = ingest_transactions(backend, inputs, InputConfig(), work=tmp_path / f"work-{name}")
            results[name] = (ing, clean_transactions(backend, ing, CleanConfig()))
        finally:
            backend.close()

    (pq_ing, pq_res), (csv_ing, csv_res) = results["parquet"], results["csv"]
    assert pq_ing.input_rows == csv_ing.input_rows == 541_909
    assert len(csv_ing.files) == 305
    for res in (pq_res, csv_res):
        assert res.input_rows == res.clean_rows + res.quarantined_rows == 541_909
    assert recon(pq_res) == recon(csv_res)
    assert pq_res.clean_rows == csv_res.clean_rows
    assert recon(pq_res)["missing_customer"] == 135_080
    assert recon(pq_res)["malformed_line"] == 0
