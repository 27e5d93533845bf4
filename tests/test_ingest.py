"""Tests of shopseg.ingest: column mapping, encodings, delimiters, dates, varying exports, file sets, errors."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shopseg.backends import DuckDBBackend
from shopseg.config import InputConfig
from shopseg.errors import DataError, InputError, SchemaError, ShopsegError
from shopseg.ingest import IngestResult, ingest_transactions

Ingest = Callable[..., IngestResult]
Write = Callable[..., Path]

RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
RETAIL_ROWS = (
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850.0,United Kingdom\n"
    "536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850.0,United Kingdom\n"
    "536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,1.85,17850.0,United Kingdom\n"
    "536367,84879,ASSORTED COLOUR BIRD ORNAMENT,32,12/1/2010 8:34,1.69,13047.0,United Kingdom\n"
)


def typed(backend: DuckDBBackend) -> pd.DataFrame:
    """The canonical typed view the ingest step creates, in input order."""
    df = backend.df("SELECT * FROM transactions_typed ORDER BY _row_id")
    return df.astype(object).where(df.notna(), None)  # missing → None whatever the column's dtype


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


# ------------------------------------------------------------------------------------------- column mapping


def test_online_retail_names_map_automatically(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    result = ingest(write_file("retail.csv", RETAIL_HEADER + RETAIL_ROWS))
    assert result.mapping.source == {
        "customer_id": "CustomerID",
        "order_id": "InvoiceNo",
        "product_id": "StockCode",
        "product_name": "Description",
        "quantity": "Quantity",
        "unit_price": "UnitPrice",
        "ts": "InvoiceDate",
        "country": "Country",
    }
    assert set(result.mapping.how.values()) == {"automatic"}
    df = typed(backend)
    assert list(df["customer_id"]) == ["17850", "17850", "17850", "13047"]  # '17850.0' → '17850'
    assert list(df["order_id"]) == ["536365", "536365", "536366", "536367"]
    assert list(df["quantity"]) == [6.0, 6.0, 6.0, 32.0]
    assert list(df["unit_price"]) == [2.55, 3.39, 1.85, 1.69]
    assert df["ts"].iloc[0] == ts("2010-12-01 08:26")
    assert result.input_rows == 4 and result.has_products


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "Customer ID,Invoice,StockCode,Quantity,Price,InvoiceDate",  # Online Retail II
            {
                "customer_id": "Customer ID",
                "order_id": "Invoice",
                "product_id": "StockCode",
                "quantity": "Quantity",
                "unit_price": "Price",
                "ts": "InvoiceDate",
            },
        ),
        (
            "user_id,order_id,sku,qty,price,order_date",
            {
                "customer_id": "user_id",
                "order_id": "order_id",
                "product_id": "sku",
                "quantity": "qty",
                "unit_price": "price",
                "ts": "order_date",
            },
        ),
        (
            "  CUSTOMER-ID ,ORDER #,S.K.U.,Q.T.Y,Unit Price,Order_Date",  # case, space, punctuation
            {
                "customer_id": "CUSTOMER-ID",
                "order_id": "ORDER #",
                "product_id": "S.K.U.",
                "quantity": "Q.T.Y",
                "unit_price": "Unit Price",
                "ts": "Order_Date",
            },
        ),
    ],
)
def test_other_spellings_map(
    header: str, expected: dict[str, str], write_file: Write, ingest: Ingest, backend: DuckDBBackend
) -> None:
    body = "c1,o1,P1,3,2.50,2011-01-16 10:42:00\nc2,o2,P2,1,4.00,2011-01-17 11:00:00\n"
    result = ingest(write_file("shop.csv", header + "\n" + body))
    assert result.mapping.source == expected
    df = typed(backend)
    assert list(df["customer_id"]) == ["c1", "c2"]
    assert list(df["order_id"]) == ["o1", "o2"]
    assert list(df["product_id"]) == ["P1", "P2"]
    assert list(df["quantity"]) == [3.0, 1.0]
    assert list(df["unit_price"]) == [2.5, 4.0]
    assert list(df["ts"]) == [ts("2011-01-16 10:42"), ts("2011-01-17 11:00")]


def test_explicit_mapping_wins(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    # 'CustomerID' would be picked automatically; the explicit choice of 'Kunde' must win
    text = "Kunde,CustomerID,Datum,Price\nK1,X9,2011-01-16 10:42:00,2.5\nK2,X9,2011-01-17 10:42:00,3\n"
    result = ingest(write_file("de.csv", text), columns={"customer_id": "Kunde", "ts": "Datum"})
    assert result.mapping.source == {"customer_id": "Kunde", "ts": "Datum", "unit_price": "Price"}
    assert result.mapping.how == {"customer_id": "explicit", "ts": "explicit", "unit_price": "automatic"}
    assert list(typed(backend)["customer_id"]) == ["K1", "K2"]


def test_explicit_mapping_for_unnamed_columns(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    text = "a,b,c,CustomerID\n5,2011-01-16 10:42:00,2.5,7\n"
    result = ingest(write_file("abc.csv", text), columns={"customer_id": "a", "ts": "b", "unit_price": "c"})
    df = typed(backend)
    assert result.mapping.how == {"customer_id": "explicit", "ts": "explicit", "unit_price": "explicit"}
    assert (df["customer_id"].iloc[0], df["unit_price"].iloc[0]) == ("5", 2.5)


def test_explicit_typo_suggests_closest(write_file: Write, ingest: Ingest) -> None:
    path = write_file("retail.csv", RETAIL_HEADER + RETAIL_ROWS)
    with pytest.raises(SchemaError) as err:
        ingest(path, columns={"customer_id": "CustmerID"})
    msg = str(err.value)
    assert "'CustmerID'" in msg
    assert "did you mean 'CustomerID'" in msg
    assert "--customer-col" in msg
    for col in ("InvoiceNo", "StockCode", "InvoiceDate", "Country"):  # the columns found are listed
        assert col in msg


def test_missing_required_column_lists_columns_and_flag(write_file: Write, ingest: Ingest) -> None:
    path = write_file("nocust.csv", "InvoiceNo,Quantity,InvoiceDate,UnitPrice\n1,2,2011-01-16 10:42:00,2.5\n")
    with pytest.raises(SchemaError) as err:
        ingest(path)
    msg = str(err.value)
    assert "customer_id" in msg and "--customer-col" in msg
    for col in ("InvoiceNo", "Quantity", "InvoiceDate", "UnitPrice"):
        assert f"'{col}'" in msg


def test_missing_required_column_names_closest_candidate(write_file: Write, ingest: Ingest) -> None:
    path = write_file("typo.csv", "Custmer,InvoiceDate,UnitPrice\n1,2011-01-16 10:42:00,2.5\n")
    with pytest.raises(SchemaError, match="--customer-col") as err:
        ingest(path)
    assert "'Custmer'" in str(err.value).split("Closest")[1]


def test_missing_date_column_names_date_flag(write_file: Write, ingest: Ingest) -> None:
    with pytest.raises(SchemaError, match="--date-col"):
        ingest(write_file("nodate.csv", "CustomerID,UnitPrice\n1,2.5\n"))


# ------------------------------------------------------------------------------------------------ encodings

ENC_ROWS = (
    "1,A1,CAFÉ £5 MUG,2,2011-01-16 10:42:00,2.55,17850.0,United Kingdom\n"
    '2,A2,"CRÈME BRÛLÉE SET, RED",1,2011-01-17 10:42:00,3,17851.0,France\n'
    "3,A3,PLAIN ASCII LINE,1,2011-01-18 10:42:00,1,17852.0,United Kingdom\n"
)
ENC_NAMES = ["CAFÉ £5 MUG", "CRÈME BRÛLÉE SET, RED", "PLAIN ASCII LINE"]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "iso-8859-1", "cp1252"])
def test_encodings_give_identical_names(
    encoding: str, write_file: Write, ingest: Ingest, backend: DuckDBBackend
) -> None:
    result = ingest(write_file("enc.csv", RETAIL_HEADER + ENC_ROWS, encoding=encoding))
    df = typed(backend)
    assert list(df["product_name"]) == ENC_NAMES
    # the BOM must not end up in the first column's name
    assert result.mapping.source["order_id"] == "InvoiceNo"
    assert list(df["order_id"]) == ["1", "2", "3"]


def test_cp1252_only_characters(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    # '€', '–' and curly quotes exist in cp1252 but not in ISO-8859-1
    rows = "1,A1,“BEST” MUG – €5 £4,2,2011-01-16 10:42:00,2.55,17850.0,United Kingdom\n"
    ingest(write_file("cp.csv", RETAIL_HEADER + rows, encoding="cp1252"))
    assert typed(backend)["product_name"].iloc[0] == "“BEST” MUG – €5 £4"


def test_explicit_encoding_is_used(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    ingest(write_file("l1.csv", RETAIL_HEADER + ENC_ROWS, encoding="latin-1"), encoding="latin-1")
    assert list(typed(backend)["product_name"]) == ENC_NAMES


def test_latin1_bytes_in_a_large_ascii_file(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    # the only non-ASCII byte sits far past the first sniffing window
    filler = "".join(
        f"{i},P{i},PLAIN ITEM {i},1,2011-01-16 10:42:00,1.5,{10000 + i % 50},United Kingdom\n" for i in range(6000)
    )
    last = "9999,PX,CAFÉ £ MUG,1,2011-01-16 10:42:00,1.5,10001,United Kingdom\n"
    result = ingest(write_file("big.csv", RETAIL_HEADER + filler + last, encoding="cp1252"))
    assert result.input_rows == 6001
    assert backend.scalar("SELECT product_name FROM transactions_typed WHERE order_id = '9999'") == "CAFÉ £ MUG"


# ----------------------------------------------------------------------------------------------- delimiters


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "comma.csv",
            "customer,order,product,description,qty,price,date\n"
            'c1,o1,P1,"MUG, RED",2,2.55,2011-01-16 10:42:00\n'
            'c2,o2,P2,"BOWL ""LARGE""",1,10.00,2011-01-17 10:42:00\n',
        ),
        (
            "semi.csv",
            "customer;order;product;description;qty;price;date\n"
            'c1;o1;P1;"MUG; RED";2;2,55;2011-01-16 10:42:00\n'
            "c2;o2;P2;BOWL;1;10,00;2011-01-17 10:42:00\n",
        ),
        (
            "tab.tsv",
            "customer\torder\tproduct\tdescription\tqty\tprice\tdate\n"
            'c1\to1\tP1\t"MUG\tRED"\t2\t2.55\t2011-01-16 10:42:00\n'
            "c2\to2\tP2\tBOWL\t1\t10.00\t2011-01-17 10:42:00\n",
        ),
        (
            "pipe.psv",
            "customer|order|product|description|qty|price|date\n"
            'c1|o1|P1|"MUG| RED"|2|2.55|2011-01-16 10:42:00\n'
            "c2|o2|P2|BOWL|1|10.00|2011-01-17 10:42:00\n",
        ),
    ],
)
def test_delimiters(name: str, text: str, write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    delim = {"comma.csv": ",", "semi.csv": ";", "tab.tsv": "\t", "pipe.psv": "|"}[name]
    result = ingest(write_file(name, text))
    assert result.file_facts[0]["delimiter"] == delim
    assert result.mapping.decimal_comma is (delim == ";")
    df = typed(backend)
    assert list(df["customer_id"]) == ["c1", "c2"]
    assert list(df["unit_price"]) == [2.55, 10.0]
    assert list(df["quantity"]) == [2.0, 1.0]
    assert df["product_name"].iloc[0] == f"MUG{delim} RED".replace("\t ", "\t")
    assert result.rejected_lines == 0


def test_decimal_comma_with_thousands_dots(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    text = "customer;date;qty;price\nk1;2011-01-16 10:42:00;1;2,55\nk2;2011-01-17 10:42:00;2;1.234,50\n"
    result = ingest(write_file("eu.csv", text))
    assert result.mapping.decimal_comma is True
    df = typed(backend)
    assert list(df["unit_price"]) == [2.55, 1234.5]


def test_runs_of_spaces(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    text = "customer   date        qty   price\n1   2011-01-16   2   2.5\n2  2011-01-17  1     3.25\n"
    result = ingest(write_file("spaces.txt", text))
    assert result.file_facts[0]["delimiter"] == "\\s+"
    df = typed(backend)
    assert list(df["customer_id"]) == ["1", "2"]
    assert list(df["quantity"]) == [2.0, 1.0]
    assert list(df["unit_price"]) == [2.5, 3.25]
    assert list(df["ts"]) == [ts("2011-01-16"), ts("2011-01-17")]


def test_explicit_delimiter(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    # ':' is not among the detected delimiters; the explicit setting decides
    text = "customer:date:price\n1:2011-01-16:2.5\n"
    ingest(write_file("colon.csv", text), delimiter=":")
    assert typed(backend)["unit_price"].iloc[0] == 2.5


# ---------------------------------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("values", "fmt", "expected"),
    [
        (["2011-01-16 10:42:00", "2011-02-03 08:05:00"], "%Y-%m-%d %H:%M:%S", ["2011-01-16 10:42", "2011-02-03 08:05"]),
        (["12/1/2010 8:26", "1/2/2011 17:05"], "%m/%d/%Y %H:%M", ["2010-12-01 08:26", "2011-01-02 17:05"]),
        # day-first: detected because a day above 12 occurs; 01/02 is then 1 February
        (["13/01/2011 10:00", "01/02/2011 11:30"], "%d/%m/%Y %H:%M", ["2011-01-13 10:00", "2011-02-01 11:30"]),
        (["19970101", "19971231"], "%Y%m%d", ["1997-01-01", "1997-12-31"]),
        (["1294135200", "1294221600000"], "epoch", ["2011-01-04 10:00", "2011-01-05 10:00"]),
    ],
)
def test_date_formats(
    values: list[str], fmt: str, expected: list[str], write_file: Write, ingest: Ingest, backend: DuckDBBackend
) -> None:
    # a session time zone far from UTC: epoch seconds are UTC instants and must not shift
    backend.execute("SET TimeZone = 'America/New_York'")
    text = "customer,date,price\n" + "".join(f"c{i},{v},1.5\n" for i, v in enumerate(values))
    result = ingest(write_file("dates.csv", text))
    assert result.mapping.date_format == fmt
    assert list(typed(backend)["ts"]) == [ts(e) for e in expected]


def test_day_first_detected_from_one_late_row(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    # many ambiguous rows, one unambiguous: the whole column is day-first
    ambiguous = "".join(f"c{i},0{1 + i % 9}/0{1 + i % 9}/2011 10:00,1\n" for i in range(50))
    ambiguous = ambiguous.replace("c7,08/08/2011", "c7,05/03/2011")
    text = "customer,date,price\n" + ambiguous + "c99,25/03/2011 09:00,1\n"
    result = ingest(write_file("dm.csv", text))
    assert result.mapping.date_format == "%d/%m/%Y %H:%M"
    df = typed(backend).set_index("customer_id")
    assert df.loc["c7", "ts"] == ts("2011-03-05 10:00")
    assert df.loc["c99", "ts"] == ts("2011-03-25 09:00")


def test_explicit_date_format_is_honoured(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    # every day is <= 12, so detection prefers US month-first; the setting says day-first
    text = "customer,date,price\nc1,01/02/2011,1\nc2,03/04/2011,1\n"
    result = ingest(write_file("d.csv", text), date_format="%d/%m/%Y")
    assert result.mapping.date_format == "%d/%m/%Y"
    assert list(typed(backend)["ts"]) == [ts("2011-02-01"), ts("2011-04-03")]


def test_unparseable_date_is_kept_as_null(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    text = RETAIL_HEADER + RETAIL_ROWS + "536368,22960,JAM JAR,6,not a date,4.25,13047.0,United Kingdom\n"
    result = ingest(write_file("bad.csv", text))
    assert result.input_rows == 5
    df = typed(backend)
    assert df["ts"].isna().tolist() == [False, False, False, False, True]


# -------------------------------------------------------------------------------------- exports that vary


@pytest.mark.parametrize("amount_col", ["amount", "Sales", "Revenue"])
def test_line_total_instead_of_unit_price(
    amount_col: str, write_file: Write, ingest: Ingest, backend: DuckDBBackend
) -> None:
    text = f"customer,order,date,qty,{amount_col}\nc1,o1,2011-01-16,4,10.00\nc2,o2,2011-01-17,3,7.50\n"
    result = ingest(write_file("amount.csv", text))
    assert result.mapping.source["amount"] == amount_col
    assert not result.mapping.has("unit_price")
    assert any("unit price = line total" in n for n in result.notes)
    assert list(typed(backend)["unit_price"]) == [2.5, 2.5]


def test_no_order_id_one_order_per_customer_and_time(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    text = (
        "customer,date,product,qty,price\n"
        "c1,2011-01-16 10:00:00,P1,1,1\n"
        "c1,2011-01-16 10:00:00,P2,1,1\n"
        "c1,2011-01-17 09:00:00,P1,1,1\n"
        "c2,2011-01-16 10:00:00,P1,1,1\n"
    )
    result = ingest(write_file("noorder.csv", text))
    assert not result.mapping.has("order_id")
    orders = list(typed(backend)["order_id"])
    assert orders[0] == orders[1]
    assert len(set(orders)) == 3
    assert orders[2] != orders[0] and orders[3] != orders[0]


def test_no_product_column(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    result = ingest(write_file("noprod.csv", "customer,date,price\nc1,2011-01-16,1.5\n"))
    assert result.has_products is False
    assert any("no product column" in n for n in result.notes)
    assert typed(backend)["product_id"].isna().all()


def test_headerless_cdnow_guessed(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    text = (
        "00001 19970101  1  11.77\n"
        "00002 19970112  1  12.00\n"
        "00002 19970112  5  77.00\n"
        "00003 19970102  2  20.76\n"
        "00003 19970330  2  20.76\n"
    )
    result = ingest(write_file("CDNOW_master.txt", text))
    assert result.mapping.source == {
        "customer_id": "column0",
        "ts": "column1",
        "quantity": "column2",
        "amount": "column3",
    }
    assert set(result.mapping.how.values()) == {"guessed"}
    assert any("guessed" in n for n in result.notes)
    df = typed(backend)
    assert list(df["customer_id"]) == ["00001", "00002", "00002", "00003", "00003"]
    assert list(df["ts"]) == [ts(d) for d in ("1997-01-01", "1997-01-12", "1997-01-12", "1997-01-02", "1997-03-30")]
    assert list(df["quantity"]) == [1.0, 1.0, 5.0, 2.0, 2.0]
    assert list(df["unit_price"]) == pytest.approx([11.77, 12.0, 15.4, 10.38, 10.38])
    assert result.input_rows == 5


def test_headerless_with_names(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    text = "00001,19970101,1,11.77\n00002,19970112,2,24.00\n"
    result = ingest(write_file("n.csv", text), names=["customer_id", "date", "quantity", "amount"])
    assert result.mapping.source["customer_id"] == "customer_id"
    assert result.input_rows == 2
    assert list(typed(backend)["unit_price"]) == [11.77, 12.0]


# ------------------------------------------------------------------------------------------------ file sets


def _data_lines(paths: list[Path]) -> int:
    return sum(len(p.read_text(encoding="utf-8").splitlines()) - 1 for p in paths)


def test_glob_of_daily_csvs(test_data: Path, ingest: Ingest, backend: DuckDBBackend) -> None:
    folder = test_data / "online_retail_by_day"
    days = sorted(folder.glob("*.csv"))
    assert len(days) == 3
    result = ingest(str(folder / "20*.csv"))
    assert result.files == days
    assert result.input_rows == _data_lines(days) == 279 + 291 + 452
    assert result.rejected_lines == 0
    per_file = backend.df("SELECT _source, count(*) AS n FROM transactions_typed GROUP BY 1 ORDER BY 1")
    assert [Path(s).name for s in per_file["_source"]] == [d.name for d in days]
    assert list(per_file["n"]) == [291, 279, 452]


def test_folder_and_list_of_files(test_data: Path, ingest: Ingest) -> None:
    folder = test_data / "online_retail_by_day"
    days = sorted(folder.glob("*.csv"))
    result = ingest(folder)
    assert result.files == days
    assert result.input_rows == _data_lines(days)
    # a list of files, one of them named twice, is read once each
    result = ingest([days[0], days[1], days[0]])
    assert result.files == days[:2]
    assert result.input_rows == _data_lines(days[:2]) == 291 + 279


def test_folder_mixes_csv_and_parquet(
    write_file: Write, ingest: Ingest, backend: DuckDBBackend, tmp_path: Path
) -> None:
    write_file("in/a.csv", RETAIL_HEADER + RETAIL_ROWS)
    table = pa.table(
        {
            "InvoiceNo": ["600001", "600002"],
            "StockCode": ["P1", "P2"],
            "Description": ["X", "Y"],
            "Quantity": pa.array([2, 3], pa.int64()),
            "InvoiceDate": pa.array([dt.datetime(2011, 5, 1, 9, 0), dt.datetime(2011, 5, 2, 9, 0)]),
            "UnitPrice": [1.25, 2.0],
            "CustomerID": pa.array([12345, None], pa.int64()),
            "Country": ["UK", "UK"],
        }
    )
    pq.write_table(table, tmp_path / "in" / "b.parquet")
    write_file("in/notes.md", "not data")
    result = ingest(tmp_path / "in")
    assert [f.name for f in result.files] == ["a.csv", "b.parquet"]
    assert result.input_rows == 6
    assert not [n for n in result.notes if "missing from" in n]  # both files have every column
    df = typed(backend)
    tail = df[df["order_id"].isin(["600001", "600002"])]
    assert list(tail["customer_id"]) == ["12345", None]
    assert list(tail["quantity"]) == [2.0, 3.0]
    assert list(tail["ts"]) == [ts("2011-05-01 09:00"), ts("2011-05-02 09:00")]


def test_files_with_different_delimiters(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    # each file is split by its own delimiter, not by the first file's
    folder = write_file("in/a.csv", "customer;date;price\nc1;2011-01-16;2\nc2;2011-01-17;4\n").parent
    write_file("in/b.csv", "customer,date,price\nc3,2011-01-18,3\n")
    write_file("in/c.tsv", "customer\tdate\tprice\nc4\t2011-01-19\t5\n")
    result = ingest(folder)
    assert [f["delimiter"] for f in result.file_facts] == [";", ",", "\t"]
    df = typed(backend)
    assert list(df["customer_id"]) == ["c1", "c2", "c3", "c4"]
    assert list(df["unit_price"]) == [2.0, 4.0, 3.0, 5.0]
    assert list(df["ts"]) == [ts(f"2011-01-{d}") for d in (16, 17, 18, 19)]


def test_mixed_line_endings_in_one_csv(tmp_path: Path, ingest: Ingest, backend: DuckDBBackend) -> None:
    """CRLF and LF lines in one file (exports appended to each other): every row read, in order, with a note;
    a quoted field keeps its line break (as LF)."""
    header = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
    rows = [
        '536365,85123A,"WHITE\r\nHEART",6,2010-12-01 08:26:00,2.55,17850,United Kingdom',
        "536366,71053,LANTERN,6,2010-12-01 08:28:00,3.39,17850,United Kingdom",
        "536367,22633,HAND WARMER,6,2010-12-02 08:28:00,1.85,17851,United Kingdom",
        "536368,22634,ALARM CLOCK,2,2010-12-03 08:28:00,3.75,17852,France",
    ]
    ends = ["\r\n", "\r\n", "\n", "\n", "\r\n"]
    path = tmp_path / "mixed.csv"
    path.write_bytes("".join(line + end for line, end in zip([header, *rows], ends, strict=True)).encode())
    result = ingest(path)
    assert result.input_rows == 4 and result.rejected_lines == 0
    assert any("CRLF and LF" in n for n in result.notes)
    df = typed(backend)
    assert list(df["order_id"]) == ["536365", "536366", "536367", "536368"]
    assert list(df["customer_id"]) == ["17850", "17850", "17851", "17852"]
    assert df["product_name"].iloc[0] == "WHITE\nHEART"
    assert set(backend.df("SELECT DISTINCT _source FROM raw_transactions")["_source"]) == {str(path)}


def test_a_column_only_some_files_have_is_named(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    """Files united by name: a column another file lacks is empty on that file's rows, and a note says which."""
    write_file("in/a.csv", RETAIL_HEADER + RETAIL_ROWS)
    no_country = RETAIL_HEADER.replace(",Country", "")
    rows = "".join(line.rsplit(",", 1)[0] + "\n" for line in RETAIL_ROWS.splitlines(keepends=False) if line)
    path = write_file("in/b.csv", no_country + rows)
    result = ingest(path.parent)
    notes = [n for n in result.notes if "missing from" in n]
    assert notes == ["column 'Country' is missing from 1 of 2 input files (b.csv); it is empty on their rows"]
    df = typed(backend)
    n = len([line for line in RETAIL_ROWS.splitlines() if line])
    assert result.input_rows == 2 * n and df["country"].isna().sum() == n


def test_parquet_keeps_types(tmp_path: Path, ingest: Ingest, backend: DuckDBBackend) -> None:
    table = pa.table(
        {
            "order_id": ["o1", "o2", "o3"],
            "user_id": pa.array([7, 8, None], pa.int64()),
            "sku": ["A", "B", "C"],
            "qty": pa.array([1, 2, 3], pa.int32()),
            "price": [9.99, 0.5, 3.0],
            "order_date": pa.array([dt.datetime(2020, 1, 1, 12), dt.datetime(2020, 1, 2), dt.datetime(2020, 1, 3)]),
        }
    )
    path = tmp_path / "orders.parquet"
    pq.write_table(table, path)
    result = ingest(path)
    assert result.mapping.date_format is None
    df = typed(backend)
    assert list(df["customer_id"]) == ["7", "8", None]
    assert list(df["quantity"]) == [1.0, 2.0, 3.0]
    assert list(df["unit_price"]) == [9.99, 0.5, 3.0]
    assert df["ts"].iloc[0] == ts("2020-01-01 12:00")


def _workbook(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    from openpyxl import Workbook

    wb = Workbook()
    first = True
    for name, rows in sheets.items():
        ws = wb.active if first else wb.create_sheet()
        assert ws is not None
        ws.title = name
        first = False
        for row in rows:
            ws.append(row)
    wb.save(path)
    return path


XL_HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]


def test_excel_first_and_named_sheet(tmp_path: Path, ingest: Ingest, backend: DuckDBBackend) -> None:
    path = _workbook(
        tmp_path / "orders.xlsx",
        {
            "Year 2010": [
                XL_HEADER,
                [536365, "85123A", "WHITE HEART £", 6, dt.datetime(2010, 12, 1, 8, 26), 2.55, 17850, "United Kingdom"],
                [536366, "22633", "HAND WARMER", 6, dt.datetime(2010, 12, 1, 8, 28), 1.85, 17850, "United Kingdom"],
            ],
            "Year 2011": [
                XL_HEADER,
                ["C540000", "22633", "HAND WARMER", -1, dt.datetime(2011, 1, 4, 10, 0), 1.85, 17850.0, "France"],
            ],
        },
    )
    result = ingest(path)
    assert result.input_rows == 2
    df = typed(backend)
    assert list(df["order_id"]) == ["536365", "536366"]
    assert list(df["customer_id"]) == ["17850", "17850"]
    assert list(df["product_name"]) == ["WHITE HEART £", "HAND WARMER"]
    assert list(df["unit_price"]) == [2.55, 1.85]
    assert list(df["ts"]) == [ts("2010-12-01 08:26"), ts("2010-12-01 08:28")]

    result = ingest(path, sheet="Year 2011")
    assert result.input_rows == 1
    row = typed(backend).iloc[0]
    assert (row["order_id"], row["customer_id"], row["quantity"]) == ("C540000", "17850", -1.0)
    assert row["ts"] == ts("2011-01-04 10:00")


def test_excel_unknown_sheet_lists_sheets(tmp_path: Path, ingest: Ingest) -> None:
    path = _workbook(tmp_path / "o.xlsx", {"Orders": [XL_HEADER], "Returns": [XL_HEADER]})
    with pytest.raises(InputError) as err:
        ingest(path, sheet="Order")
    msg = str(err.value)
    assert "'Orders'" in msg and "'Returns'" in msg and "--sheet" in msg


# --------------------------------------------------------------------------------------------------- errors


def test_empty_file(write_file: Write, ingest: Ingest) -> None:
    with pytest.raises(DataError, match="empty"):
        ingest(write_file("empty.csv", ""))


def test_blank_lines_only(write_file: Write, ingest: Ingest) -> None:
    with pytest.raises(DataError):
        ingest(write_file("blank.csv", "\n\n  \n"))


def test_header_only(write_file: Write, ingest: Ingest) -> None:
    with pytest.raises(DataError, match="no data rows"):
        ingest(write_file("header.csv", RETAIL_HEADER))


def test_no_customer_ids_at_all(write_file: Write, ingest: Ingest) -> None:
    rows = re.sub(r",1\d{4}\.0,", ",,", RETAIL_ROWS)
    assert "17850" not in rows
    with pytest.raises(DataError, match="--customer-col"):
        ingest(write_file("anon.csv", RETAIL_HEADER + rows))


def test_nonexistent_path(tmp_path: Path, ingest: Ingest) -> None:
    with pytest.raises(InputError, match="does not exist"):
        ingest(tmp_path / "nope.csv")


def test_glob_matching_nothing(tmp_path: Path, ingest: Ingest) -> None:
    with pytest.raises(InputError, match="matches no file"):
        ingest(str(tmp_path / "*.csv"))


def test_empty_folder(tmp_path: Path, ingest: Ingest) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        ingest(tmp_path / "empty")


def test_unsupported_suffix(write_file: Write, ingest: Ingest) -> None:
    with pytest.raises(InputError, match=re.escape("unsupported file type '.json'")):
        ingest(write_file("orders.json", '{"a": 1}'))


def test_no_inputs(backend: DuckDBBackend, tmp_path: Path) -> None:
    with pytest.raises(InputError):
        ingest_transactions(backend, [], InputConfig(), work=tmp_path)


def test_errors_share_one_root() -> None:
    for exc in (InputError, SchemaError, DataError):
        assert issubclass(exc, ShopsegError)
    assert issubclass(SchemaError, InputError) and issubclass(DataError, InputError)


# ------------------------------------------------------------------------------------------ malformed lines


def test_malformed_line_is_counted(write_file: Write, ingest: Ingest, backend: DuckDBBackend) -> None:
    text = (
        RETAIL_HEADER
        + RETAIL_ROWS
        + "536370,22728,ALARM CLOCK,24,12/1/2010 8:45,3.75,12583.0,France,EXTRA\n"  # one field too many
        + "536371,22727,ALARM CLOCK RED\n"  # too few
        + "536372,22726,ALARM CLOCK GREEN,4,12/1/2010 8:45,3.75,12583.0,France\n"
    )
    result = ingest(write_file("mal.csv", text))
    assert result.raw_rows == 5
    assert result.rejected_lines == 2
    assert result.input_rows == 7 == len(text.splitlines()) - 1
    assert result.summary()["malformed_lines"] == 2
    lines = backend.df("SELECT csv_line FROM raw_transactions_rejects ORDER BY line")["csv_line"].tolist()
    assert lines[0].endswith("France,EXTRA") and lines[1] == "536371,22727,ALARM CLOCK RED"


def test_parquet_float_ids_become_integer_text(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shopseg.backends import DuckDBBackend
    from shopseg.ingest import ingest_transactions

    table = pa.table(
        {
            "CustomerID": pa.array([17850.0, np.nan, None, 12.5], type=pa.float64(), from_pandas=False),
            "InvoiceNo": pa.array([536365, 536366, 536367, 536368], type=pa.int64()),
            "InvoiceDate": pa.array(["2011-01-01"] * 4).cast(pa.timestamp("us")),
            "UnitPrice": [1.0, 2.0, 3.0, 4.0],
        }
    )
    path = tmp_path / "f.parquet"
    pq.write_table(table, path)
    b = DuckDBBackend(tmp_path / "t.duckdb")
    ingest_transactions(b, [path], work=tmp_path / "w")
    rows = b.df("SELECT customer_id, order_id FROM transactions_typed ORDER BY _row_id")
    b.close()
    assert rows["customer_id"].tolist()[0] == "17850"
    assert rows["customer_id"].isna().tolist() == [False, True, True, False]
    assert rows["customer_id"].tolist()[3] == "12.5"
    assert rows["order_id"].tolist() == ["536365", "536366", "536367", "536368"]


def test_parquet_read_in_place_survives_another_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parquet inputs named relatively stay readable from the run's database wherever it is opened later, and
    each line keeps the file name as given and its row id (file by file, in order)."""
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"x": [1, 2, 3]}), data / "a.parquet")
    pq.write_table(pa.table({"x": [4, 5]}), data / "b.parquet")
    monkeypatch.chdir(data)
    db = tmp_path / "run.duckdb"
    backend = DuckDBBackend(db)
    try:
        assert backend._parquet_view("raw_x", [Path("a.parquet"), Path("b.parquet")]) == (5, 0)
    finally:
        backend.close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    backend = DuckDBBackend(db)
    try:
        rows = backend.rows("SELECT x, _source, rowid FROM raw_x ORDER BY rowid")
    finally:
        backend.close()
    assert [tuple(r) for r in rows] == [
        (1, "a.parquet", 0),
        (2, "a.parquet", 1),
        (3, "a.parquet", 2),
        (4, "b.parquet", 3),
        (5, "b.parquet", 4),
    ]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "parquet+csv", "excel"])
def test_input_columns_named_like_the_raw_tables_own(
    fmt: str, tmp_path: Path, write_file: Write, ingest: Ingest, backend: DuckDBBackend
) -> None:
    """A database export's own row number is often a column called 'rowid' (and a column may be called
    '_source'): both names are the raw tables' own, so such columns are read as 'rowid_' / '_Source_' with a
    note, and the lines keep their identity, typing and mapping in every format."""
    rows = [
        ["17", "web", "536365", "85123A", "6", "2010-12-01 08:26:00", "2.55", "17850"],
        ["18", "shop", "536366", "22633", "2", "2010-12-01 08:28:00", "1.85", "13047"],
    ]
    header = ["ROWID", "_Source", "InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]
    table = pa.table({h: [r[i] for r in rows] for i, h in enumerate(header)})
    csv_text = ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    if fmt == "csv":
        inputs: list[str | Path] = [write_file("o.csv", csv_text)]
    elif fmt == "parquet":
        pq.write_table(table, tmp_path / "o.parquet")
        inputs = [tmp_path / "o.parquet"]
    elif fmt == "parquet+csv":
        pq.write_table(table, tmp_path / "o.parquet")
        inputs = [tmp_path / "o.parquet", write_file("p.csv", csv_text)]
    else:
        inputs = [_workbook(tmp_path / "o.xlsx", {"Orders": [header, *rows]})]
    res = ingest(inputs)
    assert any("'ROWID' read as 'ROWID_'" in n for n in res.notes), res.notes
    assert any("'_Source' read as '_Source_'" in n for n in res.notes), res.notes
    df = typed(backend)
    assert list(df["_row_id"]) == list(range(1, len(df) + 1))
    assert list(df["product_id"][:2]) == ["85123A", "22633"] and list(df["customer_id"][:2]) == ["17850", "13047"]
    assert list(df["quantity"][:2]) == [6.0, 2.0]
    raw = backend.df('SELECT "ROWID_", "_Source_" FROM raw_transactions')
    assert [str(v) for v in raw["ROWID_"][:2]] == ["17", "18"] and list(raw["_Source_"][:2]) == ["web", "shop"]
