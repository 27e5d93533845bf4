"""Canonical tables, their columns and types, and the synonyms used for automatic column mapping."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    """One canonical column: its SQL type, whether it is required, and the names shops use for it."""

    name: str
    sql_type: str
    kind: str  # "id" | "text" | "number" | "timestamp"
    required: bool
    description: str
    synonyms: tuple[str, ...] = field(default_factory=tuple)
    flag: str = ""  # CLI flag that sets it by hand


def normalize_name(name: str) -> str:
    """Lower-case and strip everything that is not a letter or digit: 'Customer ID' -> 'customerid'."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


TRANSACTION_COLUMNS: tuple[Column, ...] = (
    Column(
        "customer_id",
        "VARCHAR",
        "id",
        True,
        "who bought",
        (
            "customerid",
            "customer",
            "custid",
            "customerno",
            "customernumber",
            "clientid",
            "client",
            "userid",
            "user",
            "buyerid",
            "memberid",
            "accountid",
            "customerkey",
            "cid",
            "uid",
        ),
        "--customer-col",
    ),
    Column(
        "order_id",
        "VARCHAR",
        "id",
        False,
        "invoice / order number (one per basket)",
        (
            "invoiceno",
            "invoice",
            "invoiceid",
            "invoicenumber",
            "orderid",
            "order",
            "orderno",
            "ordernumber",
            "transactionid",
            "transaction",
            "receiptid",
            "basketid",
            "billno",
            "ordercode",
        ),
        "--order-col",
    ),
    Column(
        "product_id",
        "VARCHAR",
        "id",
        False,
        "product code / SKU",
        (
            "stockcode",
            "productid",
            "product",
            "sku",
            "itemid",
            "item",
            "productcode",
            "itemcode",
            "articleid",
            "article",
            "asin",
            "productno",
            "variantid",
        ),
        "--product-col",
    ),
    Column(
        "product_name",
        "VARCHAR",
        "text",
        False,
        "product description",
        (
            "description",
            "productname",
            "itemname",
            "itemdescription",
            "productdescription",
            "title",
            "name",
            "productdesc",
            "articlename",
        ),
        "--product-name-col",
    ),
    Column(
        "category",
        "VARCHAR",
        "text",
        False,
        "product category",
        (
            "category",
            "productcategory",
            "categoryname",
            "categorycode",
            "department",
            "productline",
            "categoryid",
        ),
        "--category-col",
    ),
    Column(
        "quantity",
        "DOUBLE",
        "number",
        False,
        "units on the line (1 when absent)",
        (
            "quantity",
            "qty",
            "units",
            "unitsold",
            "unitssold",
            "count",
            "numberofitems",
            "items",
            "quantityordered",
            "amountofitems",
            "pieces",
        ),
        "--quantity-col",
    ),
    Column(
        "unit_price",
        "DOUBLE",
        "number",
        False,
        "price of one unit",
        (
            "unitprice",
            "price",
            "priceeach",
            "itemprice",
            "productprice",
            "unitcost",
            "priceperunit",
            "saleprice",
            "rate",
        ),
        "--price-col",
    ),
    Column(
        "amount",
        "DOUBLE",
        "number",
        False,
        "line total; stands in for unit price when that is absent",
        (
            "amount",
            "sales",
            "revenue",
            "total",
            "linetotal",
            "totalprice",
            "totalamount",
            "value",
            "salesamount",
            "lineamount",
            "gross",
            "netsales",
            "spend",
            "totalsales",
            "ordervalue",
        ),
        "--amount-col",
    ),
    Column(
        "ts",
        "TIMESTAMP",
        "timestamp",
        True,
        "when the order was placed",
        (
            "invoicedate",
            "orderdate",
            "date",
            "timestamp",
            "datetime",
            "time",
            "ts",
            "purchasedate",
            "transactiondate",
            "createdat",
            "orderdatetime",
            "ordertime",
            "eventtime",
            "saledate",
            "orderpurchasetimestamp",
            "day",
        ),
        "--date-col",
    ),
    Column(
        "country",
        "VARCHAR",
        "text",
        False,
        "customer's country",
        ("country", "countryname", "nation", "region", "market", "shipcountry", "billingcountry"),
        "--country-col",
    ),
)

#: Canonical columns of the clean ``transactions`` table, in order (``amount`` is folded into unit_price).
CANONICAL_TRANSACTIONS: tuple[str, ...] = (
    "customer_id",
    "order_id",
    "product_id",
    "product_name",
    "category",
    "quantity",
    "unit_price",
    "ts",
    "country",
)

TABLES = {"transactions": TRANSACTION_COLUMNS}


def column(name: str) -> Column:
    for col in TRANSACTION_COLUMNS:
        if col.name == name:
            return col
    raise KeyError(name)


def closest(name: str, candidates: list[str], n: int = 3) -> list[str]:
    """The candidates closest to ``name``, compared case-, space- and punctuation-insensitively."""
    norm = {normalize_name(c): c for c in candidates}
    hits = difflib.get_close_matches(normalize_name(name), list(norm), n=n, cutoff=0.5)
    return [norm[h] for h in hits]
