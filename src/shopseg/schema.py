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

EVENT_COLUMNS: tuple[Column, ...] = (
    Column(
        "customer_id",
        "VARCHAR",
        "id",
        True,
        "who acted (user / visitor id)",
        (
            # GA exports first: their pseudo/visitor id is always set, their user_id only for signed-in users
            "userpseudoid",
            "fullvisitorid",
            "visitorid",
            "userid",
            "customerid",
            "user",
            "visitor",
            "customer",
            "clientid",
            "uid",
            "memberid",
            "accountid",
            "cid",
        ),
    ),
    Column(
        "session_id",
        "VARCHAR",
        "id",
        False,
        "session (visit) id; sessions are made from 30 minutes of inactivity when absent",
        ("usersession", "sessionid", "session", "gasessionid", "visitid", "sessionkey", "visitnumber"),
    ),
    Column(
        "ts",
        "TIMESTAMP",
        "timestamp",
        True,
        "when the event happened (UTC)",
        (
            "eventtime",
            "eventtimestamp",
            "timestamp",
            "eventdatetime",
            "datetime",
            "time",
            "ts",
            "hittimestamp",
            "createdat",
            "date",
            "eventdate",
        ),
    ),
    Column(
        "event_type",
        "VARCHAR",
        "text",
        True,
        "what happened: view, cart, remove_from_cart, purchase, banner_view, banner_click",
        ("eventtype", "event", "eventname", "eventaction", "action", "actiontype", "behavior", "behaviour", "type"),
    ),
    Column(
        "product_id",
        "VARCHAR",
        "id",
        False,
        "product viewed / carted / bought",
        ("productid", "itemid", "product", "sku", "item", "productsku", "productcode", "articleid", "variantid"),
    ),
    Column(
        "category",
        "VARCHAR",
        "text",
        False,
        "product category (readable code or name)",
        ("categorycode", "category", "itemcategory", "productcategory", "categoryname", "v2productcategory"),
    ),
    Column(
        "category_id",
        "VARCHAR",
        "id",
        False,
        "numeric category id; stands in for the category where that is empty",
        ("categoryid", "catid", "itemcategoryid"),
    ),
    Column(
        "brand",
        "VARCHAR",
        "text",
        False,
        "product brand",
        ("brand", "itembrand", "productbrand", "brandname", "manufacturer", "vendor"),
    ),
    Column(
        "price",
        "DOUBLE",
        "number",
        False,
        "price of the product (of one unit)",
        ("price", "itemprice", "productprice", "unitprice", "priceinusd", "value"),
    ),
    Column(
        "device",
        "VARCHAR",
        "text",
        False,
        "device or platform (mobile, desktop, tablet, app …)",
        ("device", "devicecategory", "devicetype", "platform", "deviceplatform"),
    ),
    Column(
        "order_id",
        "VARCHAR",
        "id",
        False,
        "order / transaction id of a purchase event",
        ("transactionid", "orderid", "order", "invoiceno", "invoice", "ordernumber"),
    ),
    Column(
        "banner_slot",
        "VARCHAR",
        "text",
        False,
        "banner / promotion slot of banner_view and banner_click events",
        ("bannerslot", "slot", "creativeslot", "placement", "bannerid", "banner", "promotionid", "promoid"),
    ),
)

#: Canonical columns of the clean ``events`` table, in order (``category_id`` is folded into category).
CANONICAL_EVENTS: tuple[str, ...] = (
    "customer_id",
    "session_id",
    "ts",
    "event_type",
    "product_id",
    "category",
    "brand",
    "price",
    "device",
    "order_id",
    "banner_slot",
)

#: Canonical event types. ``banner_view``/``banner_click`` are impressions of and clicks on an internal
#: banner (slot in ``banner_slot``); they feed the banner economics, not the shopping funnel.
EVENT_TYPES: tuple[str, ...] = ("view", "cart", "remove_from_cart", "purchase", "banner_view", "banner_click")

#: Source spellings of event types (compared lower-case with spaces, dashes and dots as '_'): REES46,
#: RetailRocket, GA4/Universal Analytics, Taobao, Snowplow-style names. Extend with ``events.event_types``.
EVENT_TYPE_SYNONYMS: dict[str, str] = {
    **dict.fromkeys(
        ("view", "views", "pageview", "page_view", "product_view", "view_item", "detail", "product_detail",
         "item_view", "productview", "pv", "viewed"),
        "view",
    ),
    **dict.fromkeys(
        ("cart", "addtocart", "add_to_cart", "add", "addtobasket", "add_to_basket", "basket", "cart_add",
         "added_to_cart"),
        "cart",
    ),
    **dict.fromkeys(
        ("remove_from_cart", "removefromcart", "remove", "cart_remove", "remove_from_basket", "removed_from_cart"),
        "remove_from_cart",
    ),
    **dict.fromkeys(
        ("purchase", "transaction", "buy", "order", "checkout_complete", "purchased", "sale", "ecommerce_purchase"),
        "purchase",
    ),
    **dict.fromkeys(
        ("banner_view", "banner_impression", "view_promotion", "promo_view", "promotion_view", "promotion_viewed",
         "ad_impression", "impression"),
        "banner_view",
    ),
    **dict.fromkeys(
        ("banner_click", "select_promotion", "promo_click", "promotion_click", "promotion_clicked", "ad_click"),
        "banner_click",
    ),
}  # fmt: skip

#: Device values counted as mobile (lower-case, compared as substrings): phones, tablets and apps.
MOBILE_DEVICE_PATTERN = "mobile|phone|android|ios|ipad|tablet|smartphone|app"

TABLES = {"transactions": TRANSACTION_COLUMNS, "events": EVENT_COLUMNS}


def source_role(columns: list[str]) -> str:
    """Which canonical table a file with these column names feeds: 'events', 'customers' or 'orders'.

    The rule (names compared as in automatic mapping, case-, space- and punctuation-insensitively):

    * **events** when a column is named like an event type (``event_type``, ``event``, ``event_name``,
      ``action``, ``behavior``) and another like a customer/visitor id;
    * **customers** when there is a customer id but no event type, no price/amount/quantity and no order id
      column (a table of attributes such as gender, city, join date);
    * **orders** otherwise, which is also what header-less files and anything ambiguous are read as.
    """
    norm = {normalize_name(c) for c in columns}
    event_type = next(c for c in EVENT_COLUMNS if c.name == "event_type")
    strong_event = set(event_type.synonyms) - {"type", "action", "actiontype"}
    ids = {normalize_name("customer_id"), *column("customer_id").synonyms, *EVENT_COLUMNS[0].synonyms}
    has_id = bool(norm & ids)
    if has_id and norm & strong_event:
        return "events"
    money = {*column("unit_price").synonyms, *column("amount").synonyms, *column("quantity").synonyms}
    orders = set(column("order_id").synonyms)
    if has_id and not norm & (money | orders | {"type", "action", "actiontype"}):
        return "customers"
    return "orders"


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
