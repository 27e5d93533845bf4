"""A synthetic shop with clickstream events, planted behaviour segments, matching orders and customer attributes.

The events come in the REES46 layout (``event_time, event_type, product_id, category_id, category_code, brand,
price, user_id, user_session``) plus ``device`` and, when banners are on, ``banner_slot``. They are calibrated
on the marginals of the REES46 sample (``../shared/data/rees46_2019oct_head``, 17,429 events after its 5
duplicates; the constants below were measured on it):

* categories: the 44 most viewed ``category_code`` values with their share of events and median price, plus
  unnamed categories (``category_code`` empty, a third of the events, median price 77.5), like the sample;
* prices: within a category, log-price spread 0.76 (standard deviation of ln(price / category median) over the
  sample's products); brands: the sample's most frequent brands, about 12 % of products without a brand;
* sessions: ``user_session`` ids, about 3.4 events per session on average (the sample's mean; median 2), gaps
  between a session's events log-normal with median 33 s (the sample's median);
* event mix: set by the planted segments; with the defaults about 95 % views, 2 % carts, 2 % purchases and a few
  removals (the sample: 97.8 % views, 0.9 % carts, 1.2 % purchases).

What the sample cannot tell (it covers 2h50m of one night) is assumed and documented: an evening-peaked
hour-of-day profile (UTC), 10 % more sessions on weekends, devices (mobile 60 %, desktop 35 %, tablet 5 %).

Planted segments (:data:`DEFAULT_BEHAVIOUR_SEGMENTS`): window shoppers (many long sessions, almost never
buy), bargain hunters (cheap items against the category median, carts they abandon), premium buyers (expensive
items, loyal to one brand), category explorers (many categories), efficient buyers (short sessions that end in a
purchase). The truth (``user_id, segment``) is written beside the data.

:func:`generate_events` builds a small shop in memory (tests, demos); :func:`write_event_shop` streams any
number of events (100M and more) to Parquet with ``pyarrow.parquet.ParquetWriter``, one chunk of customers at a
time, so memory stays flat. Both are deterministic: the same arguments and seed give identical output.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "BANNER_SLOTS",
    "DEFAULT_BEHAVIOUR_SEGMENTS",
    "EVENT_SCHEMA",
    "BehaviourSegment",
    "EventShopFiles",
    "GeneratedEvents",
    "generate_events",
    "iter_event_chunks",
    "write_event_shop",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BehaviourSegment:
    """One planted behaviour segment.

    Attributes:
        name: the label written to the truth table.
        share: fraction of customers (shares are normalised to sum to 1).
        sessions: mean sessions per customer in the period (1 + Poisson(sessions - 1)).
        views_per_session: mean product views per session (1 + Poisson(views_per_session - 1)).
        cart_rate: probability that a viewed product is added to the cart.
        remove_rate: probability that a carted product is removed again.
        buy_rate: probability that a carted product that stays in the cart is bought (at the session's end).
        price_level: the customer's price level against the category median (1 = typical); each customer
            varies around it (log-normal, sigma 0.15) and each view around the customer (sigma 0.35).
        categories: how many categories a customer browses (at most 16).
        main_share: share of the customer's views in their main category (the rest spread evenly over the
            others; 1 / categories = no main category).
        brand_loyalty: probability that a view is of the customer's favourite brand.
        banner_ctr: probability that a banner impression is clicked.
    """

    name: str
    share: float
    sessions: float
    views_per_session: float
    cart_rate: float
    remove_rate: float
    buy_rate: float
    price_level: float
    categories: int
    main_share: float
    brand_loyalty: float
    banner_ctr: float = 0.01


DEFAULT_BEHAVIOUR_SEGMENTS: tuple[BehaviourSegment, ...] = (
    BehaviourSegment("window shoppers", 0.30, 10.0, 5.0, 0.002, 0.2, 0.2, 1.0, 3, 0.85, 0.15, 0.004),
    BehaviourSegment("bargain hunters", 0.20, 5.0, 4.0, 0.12, 0.3, 0.45, 0.4, 3, 0.85, 0.1, 0.02),
    BehaviourSegment("premium buyers", 0.15, 4.0, 3.0, 0.12, 0.05, 0.85, 2.5, 2, 0.9, 0.9, 0.01),
    BehaviourSegment("category explorers", 0.20, 5.0, 4.0, 0.04, 0.1, 0.6, 1.0, 10, 0.1, 0.1, 0.008),
    BehaviourSegment("efficient buyers", 0.15, 3.0, 1.3, 0.75, 0.02, 0.95, 1.1, 2, 0.9, 0.5, 0.015),
)

#: Banner slots of the optional banner impressions / clicks (event types ``banner_view``, ``banner_click``).
BANNER_SLOTS: tuple[str, ...] = ("home_hero", "category_top", "cart_side")

#: Arrow schema of the generated events (REES46 names and types + device + banner_slot).
EVENT_SCHEMA: pa.Schema = pa.schema(
    [
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("event_type", pa.string()),
        ("product_id", pa.int64()),
        ("category_id", pa.int64()),
        ("category_code", pa.string()),
        ("brand", pa.string()),
        ("price", pa.float64()),
        ("user_id", pa.int64()),
        ("user_session", pa.string()),
        ("device", pa.string()),
        ("banner_slot", pa.string()),
    ]
)

# ---------------------------------------------------------------------------------------- REES46 marginals

#: The sample's 44 most viewed category codes: (code, share of events, median price).
_CATEGORIES: tuple[tuple[str, float, float], ...] = (
    ("electronics.smartphone", 0.2708, 286.86), ("electronics.clocks", 0.0322, 164.74),
    ("computers.notebook", 0.0318, 601.79), ("electronics.audio.headphone", 0.0231, 71.30),
    ("appliances.kitchen.refrigerators", 0.0189, 310.79), ("appliances.environment.vacuum", 0.0157, 117.04),
    ("appliances.environment.air_heater", 0.0143, 34.42), ("electronics.video.tv", 0.0141, 422.09),
    ("auto.accessories.player", 0.0141, 71.82), ("apparel.shoes", 0.0131, 89.84),
    ("appliances.kitchen.washer", 0.0129, 334.60), ("apparel.shoes.keds", 0.0110, 72.05),
    ("electronics.telephone", 0.0100, 25.96), ("furniture.living_room.cabinet", 0.0083, 282.89),
    ("auto.accessories.alarm", 0.0077, 121.24), ("appliances.kitchen.meat_grinder", 0.0073, 72.05),
    ("furniture.living_room.sofa", 0.0072, 527.55), ("computers.desktop", 0.0067, 617.00),
    ("furniture.bedroom.bed", 0.0064, 154.69), ("accessories.bag", 0.0057, 64.09),
    ("appliances.kitchen.microwave", 0.0053, 85.83), ("appliances.environment.water_heater", 0.0052, 99.46),
    ("appliances.iron", 0.0050, 28.03), ("electronics.audio.subwoofer", 0.0050, 101.67),
    ("appliances.kitchen.blender", 0.0049, 53.98), ("sport.bicycle", 0.0048, 267.70),
    ("kids.carriage", 0.0045, 118.27), ("construction.tools.drill", 0.0044, 82.37),
    ("auto.accessories.videoregister", 0.0044, 141.80), ("electronics.tablet", 0.0041, 384.31),
    ("appliances.environment.air_conditioner", 0.0040, 196.89), ("construction.tools.saw", 0.0038, 113.25),
    ("appliances.kitchen.oven", 0.0034, 54.93), ("appliances.sewing_machine", 0.0033, 235.24),
    ("computers.components.videocards", 0.0033, 315.41), ("appliances.kitchen.kettle", 0.0033, 36.01),
    ("appliances.kitchen.hood", 0.0032, 69.45), ("appliances.kitchen.mixer", 0.0029, 33.43),
    ("furniture.kitchen.table", 0.0026, 115.83), ("computers.peripherals.monitor", 0.0026, 106.87),
    ("appliances.kitchen.grill", 0.0024, 113.23), ("construction.tools.welding", 0.0024, 201.01),
    ("furniture.kitchen.chair", 0.0022, 56.63), ("computers.peripherals.printer", 0.0021, 136.09),
)  # fmt: skip
_UNNAMED_CATEGORIES = 40  # category ids without a code (the sample: 247 of 434 ids, a third of the events)
_UNNAMED_SHARE = 0.3297
_UNNAMED_MEDIAN_PRICE = 77.52
_LOG_PRICE_SD = 0.76  # sd of ln(price / category median) over the sample's products
_BRANDS: tuple[str, ...] = (
    "samsung", "apple", "xiaomi", "huawei", "bosch", "lucente", "lg", "acer", "elenberg", "artel", "lenovo",
    "hp", "sony", "cordiant", "redmond", "dauscher", "oppo", "nokia", "casio", "triangle", "vitek", "sv",
    "starline", "polaris", "asus", "respect", "philips", "pioneer", "vivo", "nokian", "sokolov", "indesit",
    "janome", "stels", "yokohama", "oasis", "beko", "luminarc", "brw",
)  # fmt: skip
_BRANDS_PER_CATEGORY = 8  # the last brand slot is "no brand"
_PRODUCTS_PER_BRAND = 50  # price ranks within a brand
_GAP_MEDIAN_S = 33.0  # median gap between a session's events (the sample)
_GAP_SIGMA = 1.0
#: Assumed share of sessions starting in each UTC hour (the sample covers one night only).
_HOURS = np.array(
    [1.2, 0.8, 0.6, 0.5, 0.6, 1.0, 2.0, 3.2, 4.2, 4.8, 5.0, 5.0, 5.2, 5.2, 5.0, 5.0, 5.3, 6.0, 6.6, 7.0, 6.8, 6.0,
     4.2, 2.6],
    dtype=np.float64,
)  # fmt: skip
_DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")
_DEVICE_P = np.array([0.60, 0.35, 0.05])
_CITIES: tuple[str, ...] = ("Moscow", "Saint Petersburg", "Novosibirsk", "Yekaterinburg", "Kazan", "Samara", "Omsk")
_CITY_P = np.array([0.35, 0.18, 0.1, 0.1, 0.1, 0.09, 0.08])
_FIRST_USER = 500_000_000
_FIRST_PRODUCT = 1_000_000
_FIRST_CATEGORY = 2_053_013_552_000_000_000
_US = 1_000_000


@dataclass(frozen=True)
class _Catalogue:
    codes: list[str | None]  # per category
    category_ids: IntArray
    popularity: FloatArray  # per category, sums to 1
    prices: FloatArray  # [category, brand, rank]
    brand_names: list[list[str | None]]  # [category][brand]
    brand_popularity: FloatArray  # per brand slot, sums to 1


def _catalogue(seed: int) -> _Catalogue:
    rng = np.random.default_rng([seed, 11])
    codes: list[str | None] = [c for c, _, _ in _CATEGORIES] + [None] * _UNNAMED_CATEGORIES
    named = np.array([s for _, s, _ in _CATEGORIES])
    # the named categories keep their measured shares; the rest of the events go to the unnamed ones
    rest = max(1.0 - named.sum() - _UNNAMED_SHARE, 0.0)
    named = named + rest * named / named.sum()
    unnamed_w = 1.0 / np.arange(1, _UNNAMED_CATEGORIES + 1)
    popularity = np.concatenate([named, _UNNAMED_SHARE * unnamed_w / unnamed_w.sum()])
    popularity /= popularity.sum()
    medians = np.concatenate(
        [
            np.array([p for _, _, p in _CATEGORIES]),
            _UNNAMED_MEDIAN_PRICE * np.exp(rng.normal(0.0, 0.8, _UNNAMED_CATEGORIES)),
        ]
    )
    n_cat = len(codes)
    from scipy.special import ndtri

    quantiles = (np.arange(_PRODUCTS_PER_BRAND) + 0.5) / _PRODUCTS_PER_BRAND
    z = ndtri(quantiles) * _LOG_PRICE_SD
    brand_factor = np.exp(rng.normal(0.0, 0.15, (n_cat, _BRANDS_PER_CATEGORY)))
    prices = np.round(medians[:, None, None] * brand_factor[:, :, None] * np.exp(z)[None, None, :], 2)
    prices = np.maximum(prices, 0.99)
    names: list[list[str | None]] = []
    seen = 1.0 / np.arange(1, len(_BRANDS) + 1)  # the sample's brands are listed by frequency
    for _ in range(n_cat):
        picked = rng.choice(len(_BRANDS), _BRANDS_PER_CATEGORY - 1, replace=False, p=seen / seen.sum())
        names.append([_BRANDS[i] for i in picked] + [None])
    brand_w = 1.0 / np.arange(1, _BRANDS_PER_CATEGORY + 1) ** 0.8
    brand_w[-1] = 0.14 * brand_w[:-1].sum() / 0.86  # ~14 % of views without a brand
    ids = _FIRST_CATEGORY + rng.choice(10**15, n_cat, replace=False).astype(np.int64)
    return _Catalogue(codes, ids, popularity, prices, names, brand_w / brand_w.sum())


# ---------------------------------------------------------------------------------------- one chunk


@dataclass
class _Chunk:
    events: pa.Table
    truth: pa.Table
    orders: pa.Table
    customers: pa.Table


def _cumsum_within(values: FloatArray, group_start: npt.NDArray[np.bool_]) -> FloatArray:
    """Running sums that restart where ``group_start`` is True (rows sorted by group)."""
    c = np.cumsum(values)
    starts = np.flatnonzero(group_start)
    offset = np.repeat(c[starts] - values[starts], np.diff(np.append(starts, len(values))))
    out: FloatArray = c - offset
    return out


def _chunk(
    cat: _Catalogue,
    segments: Sequence[BehaviourSegment],
    seg_of: IntArray,
    first_user: int,
    rng: np.random.Generator,
    *,
    start_us: int,
    days: int,
    banners: bool,
    first_order: int,
) -> tuple[_Chunk, int]:
    from scipy.special import ndtr

    n = len(seg_of)
    col = {
        f: np.array([getattr(s, f) for s in segments], dtype=np.float64)[seg_of]
        for f in (
            "sessions",
            "views_per_session",
            "cart_rate",
            "remove_rate",
            "buy_rate",
            "price_level",
            "categories",
            "main_share",
            "brand_loyalty",
            "banner_ctr",
        )
    }
    users = first_user + np.arange(n, dtype=np.int64)
    # customers: their categories, favourite brand, price level, device
    n_cats = np.clip(col["categories"].astype(np.int64), 1, 16)
    max_c = int(n_cats.max())
    cats = np.stack([rng.choice(len(cat.codes), size=n, p=cat.popularity) for _ in range(max_c)], axis=1)
    main = np.where(n_cats > 1, np.maximum(col["main_share"], 1.0 / n_cats), 1.0)
    fav_brand = rng.choice(
        _BRANDS_PER_CATEGORY - 1, size=n, p=cat.brand_popularity[:-1] / cat.brand_popularity[:-1].sum()
    )
    level = np.log(col["price_level"]) + rng.normal(0.0, 0.15, n)
    device = rng.choice(len(_DEVICES), size=n, p=_DEVICE_P)

    # sessions: start day uniform (weekends 10 % busier), hour by the assumed profile
    n_sess = 1 + rng.poisson(np.maximum(col["sessions"] - 1, 0))
    s_cust = np.repeat(np.arange(n), n_sess)
    n_s = len(s_cust)
    day_w = np.array([1.1 if (np.datetime64(start_us, "us").astype("datetime64[D]") + d).astype(datetime).weekday() >= 5
                      else 1.0 for d in range(days)])  # fmt: skip
    day = rng.choice(days, size=n_s, p=day_w / day_w.sum())
    hour = rng.choice(24, size=n_s, p=_HOURS / _HOURS.sum())
    s_start = start_us + (day * 24 + hour) * 3600 * _US + rng.integers(0, 3600 * _US, n_s)
    sess_key = rng.integers(1, 2**62, n_s, dtype=np.int64)  # opaque session ids

    # views
    n_views = 1 + rng.poisson(np.maximum(col["views_per_session"][s_cust] - 1, 0))
    v_sess = np.repeat(np.arange(n_s), n_views)
    v_cust = s_cust[v_sess]
    v_idx = np.arange(len(v_sess)) - np.repeat(np.cumsum(n_views) - n_views, n_views)
    m = len(v_sess)
    # the main category (slot 0) with its share, else one of the others evenly
    other = 1 + (rng.random(m) * np.maximum(n_cats[v_cust] - 1, 1)).astype(np.int64)
    v_cat = cats[v_cust, np.where(rng.random(m) < main[v_cust], 0, np.minimum(other, n_cats[v_cust] - 1))]
    loyal = rng.random(m) < col["brand_loyalty"][v_cust]
    v_brand = np.where(loyal, fav_brand[v_cust], rng.choice(_BRANDS_PER_CATEGORY, size=m, p=cat.brand_popularity))
    q = ndtr((level[v_cust] + rng.normal(0.0, 0.35, m)) / _LOG_PRICE_SD)
    v_rank = np.minimum((q * _PRODUCTS_PER_BRAND).astype(np.int64), _PRODUCTS_PER_BRAND - 1)
    cart = rng.random(m) < col["cart_rate"][v_cust]
    remove = cart & (rng.random(m) < col["remove_rate"][v_cust])
    buy = cart & ~remove & (rng.random(m) < col["buy_rate"][v_cust])

    # every event: (session, order key, kind, view row); views 3i, cart 3i+1, remove 3i+2, purchases at the end
    kinds = [np.zeros(m, np.int8)]
    rows = [np.arange(m)]
    keys = [3 * v_idx]
    for flag, code, off in ((cart, 1, 1), (remove, 2, 2)):
        r = np.flatnonzero(flag)
        kinds.append(np.full(len(r), code, np.int8))
        rows.append(r)
        keys.append(3 * v_idx[r] + off)
    r = np.flatnonzero(buy)
    kinds.append(np.full(len(r), 3, np.int8))
    rows.append(r)
    keys.append(10**6 + v_idx[r])
    if banners:
        b_sess = np.flatnonzero(rng.random(n_s) < 0.35)
        clicked = rng.random(len(b_sess)) < col["banner_ctr"][s_cust[b_sess]]
        slot = rng.integers(0, len(BANNER_SLOTS), len(b_sess))
    kind = np.concatenate(kinds)
    row = np.concatenate(rows)
    key = np.concatenate(keys)
    sess = v_sess[row]
    if banners:
        kind = np.concatenate([kind, np.full(len(b_sess), 4, np.int8), np.full(int(clicked.sum()), 5, np.int8)])
        row = np.concatenate([row, np.full(len(b_sess) + int(clicked.sum()), -1)])
        key = np.concatenate([key, np.full(len(b_sess), -2), np.full(int(clicked.sum()), -1)])
        sess = np.concatenate([sess, b_sess, b_sess[clicked]])
        b_slot = np.concatenate([slot, slot[clicked]])
    order = np.lexsort((key, sess))
    kind, row, sess = kind[order], row[order], sess[order]
    first = np.ones(len(sess), dtype=bool)
    first[1:] = sess[1:] != sess[:-1]
    gaps = np.exp(np.log(_GAP_MEDIAN_S) + _GAP_SIGMA * rng.standard_normal(len(sess))) * _US
    gaps[first] = 0.0
    ts = s_start[sess] + _cumsum_within(gaps, first).astype(np.int64)
    cust = s_cust[sess]
    prod = row >= 0
    vr = np.where(prod, row, 0)
    c, b, k = v_cat[vr], v_brand[vr], v_rank[vr]
    product_id = _FIRST_PRODUCT + (c * _BRANDS_PER_CATEGORY + b) * _PRODUCTS_PER_BRAND + k
    price = cat.prices[c, b, k]
    type_names = pa.array(["view", "cart", "remove_from_cart", "purchase", "banner_view", "banner_click"])
    codes = pa.array(cat.codes, type=pa.string())
    brand_flat = pa.array([x for names in cat.brand_names for x in names], type=pa.string())
    mask = ~prod
    slots: pa.Array = pa.nulls(len(sess), pa.string())
    if banners:
        slot_idx = np.full(len(order), -1)
        slot_idx[len(order) - len(b_slot) :] = b_slot
        slot_idx = slot_idx[order]
        slots = pc.if_else(
            pa.array(slot_idx >= 0),
            pa.array(list(BANNER_SLOTS), type=pa.string()).take(pa.array(np.maximum(slot_idx, 0))),
            pa.scalar(None, pa.string()),
        )
    session_str = pc.cast(pa.array(sess_key[sess]), pa.string())
    events = pa.table(
        [
            pa.array(ts, type=pa.int64()).view(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")),
            type_names.take(pa.array(kind.astype(np.int32))),
            pa.array(product_id, type=pa.int64(), mask=mask),
            pa.array(cat.category_ids[c], type=pa.int64(), mask=mask),
            pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), codes.take(pa.array(c))),
            pc.if_else(
                pa.array(mask), pa.scalar(None, pa.string()), brand_flat.take(pa.array(c * _BRANDS_PER_CATEGORY + b))
            ),
            pa.array(price, type=pa.float64(), mask=mask),
            pa.array(users[cust], type=pa.int64()),
            session_str,
            pa.array(list(_DEVICES), type=pa.string()).take(pa.array(device[cust])),
            slots,
        ],
        schema=EVENT_SCHEMA,
    )
    events = events.take(pa.array(np.argsort(ts, kind="stable")))
    truth = pa.table(
        {"user_id": pa.array(users), "segment": pa.array([segments[i].name for i in seg_of], type=pa.string())}
    )
    # orders in the Online Retail layout: one invoice per session with a purchase, one line per bought item
    bought = np.flatnonzero(kind == 3)
    inv_of_sess = np.full(n_s, -1, dtype=np.int64)
    sess_b = np.unique(sess[bought])
    inv_of_sess[sess_b] = first_order + np.arange(len(sess_b))
    desc = pc.binary_join_element_wise(
        pc.coalesce(codes.take(pa.array(c[bought])), pa.scalar("unnamed")),
        pc.coalesce(brand_flat.take(pa.array(c[bought] * _BRANDS_PER_CATEGORY + b[bought])), pa.scalar("-")),
        " ",
    )
    orders = pa.table(
        {
            "InvoiceNo": pc.cast(pa.array(inv_of_sess[sess[bought]]), pa.string()),
            "StockCode": pc.cast(pa.array(product_id[bought]), pa.string()),
            "Description": desc,
            "Quantity": pa.array(np.ones(len(bought), dtype=np.int64)),
            "InvoiceDate": pa.array(ts[bought], type=pa.int64()).view(pa.timestamp("us")),
            "UnitPrice": pa.array(price[bought]),
            "CustomerID": pa.array(users[cust[bought]]),
            "Country": pa.array(["Russia"] * len(bought), type=pa.string()),
            "Category": pc.coalesce(
                codes.take(pa.array(c[bought])), pc.cast(pa.array(cat.category_ids[c[bought]]), pa.string())
            ),
        }
    )
    first_seen = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_seen, s_cust, s_start)
    signup = first_seen - rng.integers(0, 400, n) * 86_400 * _US
    customers = pa.table(
        {
            "customer_id": pa.array(users),
            "gender": pa.array(np.where(rng.random(n) < 0.55, "F", "M"), type=pa.string()),
            "city": pa.array(list(_CITIES), type=pa.string()).take(pa.array(rng.choice(len(_CITIES), n, p=_CITY_P))),
            "age": pa.array(np.clip(np.round(rng.normal(36, 11, n)), 16, 85).astype(np.int64)),
            "signup_date": pa.array(signup, type=pa.int64()).view(pa.timestamp("us")).cast(pa.date32()),
        }
    )
    return _Chunk(events, truth, orders, customers), first_order + len(sess_b)


def _segment_of(segments: Sequence[BehaviourSegment], n: int, rng: np.random.Generator) -> IntArray:
    shares = np.array([s.share for s in segments], dtype=np.float64)
    counts = np.floor(shares / shares.sum() * n).astype(np.int64)
    counts[: n - int(counts.sum())] += 1
    seg = np.repeat(np.arange(len(segments)), counts)
    rng.shuffle(seg)
    return seg.astype(np.int64)


def _check(n_customers: int, segments: Sequence[BehaviourSegment], days: int) -> None:
    if n_customers < 1:
        raise ValueError("n_customers must be at least 1")
    if days < 1:
        raise ValueError("days must be at least 1")
    if not segments or any(s.share <= 0 for s in segments):
        raise ValueError("give at least one segment, each with a positive share")


def iter_event_chunks(
    n_customers: int,
    *,
    seed: int = 0,
    segments: Sequence[BehaviourSegment] = DEFAULT_BEHAVIOUR_SEGMENTS,
    start: datetime = datetime(2019, 10, 1),
    days: int = 30,
    banners: bool = False,
    chunk_customers: int = 50_000,
) -> Iterator[tuple[pa.Table, pa.Table, pa.Table, pa.Table]]:
    """Stream (events, truth, orders, customers) Arrow tables, ``chunk_customers`` customers at a time.

    Each customer's events are all in one chunk; the output depends on the arguments and nothing else.
    """
    _check(n_customers, segments, days)
    cat = _catalogue(seed)
    seg_all = _segment_of(segments, n_customers, np.random.default_rng([seed, 12]))
    start_us = int(np.datetime64(start, "us").astype(np.int64))
    order = 536365
    for i, lo in enumerate(range(0, n_customers, chunk_customers)):
        hi = min(lo + chunk_customers, n_customers)
        rng = np.random.default_rng([seed, 13, i])
        chunk, order = _chunk(
            cat, segments, seg_all[lo:hi], _FIRST_USER + lo, rng, start_us=start_us, days=days, banners=banners,
            first_order=order,
        )  # fmt: skip
        yield chunk.events, chunk.truth, chunk.orders, chunk.customers


@dataclass(frozen=True)
class GeneratedEvents:
    """A generated shop in memory: events (REES46 layout), orders (Online Retail layout), customer attributes
    and the truth (``user_id, segment``)."""

    events: pd.DataFrame
    orders: pd.DataFrame
    customers: pd.DataFrame
    truth: pd.DataFrame


def generate_events(
    n_customers: int,
    *,
    seed: int = 0,
    segments: Sequence[BehaviourSegment] = DEFAULT_BEHAVIOUR_SEGMENTS,
    start: datetime = datetime(2019, 10, 1),
    days: int = 30,
    banners: bool = False,
) -> GeneratedEvents:
    """A small shop with planted behaviour segments, in memory (see :func:`write_event_shop` for big ones)."""
    parts = list(iter_event_chunks(n_customers, seed=seed, segments=segments, start=start, days=days, banners=banners))
    frames = [pa.concat_tables([p[i] for p in parts]).to_pandas() for i in range(4)]
    frames[0] = frames[0].sort_values("event_time", kind="stable").reset_index(drop=True)
    return GeneratedEvents(events=frames[0], truth=frames[1], orders=frames[2], customers=frames[3])


#: Events per customer with the default segments (measured on 200,000 generated customers), used to turn an
#: event count into a customer count.
EVENTS_PER_CUSTOMER = 27.7


@dataclass
class EventShopFiles:
    """What :func:`write_event_shop` wrote."""

    events: Path
    truth: Path
    orders: Path | None = None
    customers: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)


def write_event_shop(
    out_dir: str | Path,
    *,
    n_events: int | None = None,
    n_customers: int | None = None,
    seed: int = 0,
    segments: Sequence[BehaviourSegment] = DEFAULT_BEHAVIOUR_SEGMENTS,
    start: datetime = datetime(2019, 10, 1),
    days: int = 30,
    banners: bool = False,
    orders: bool = True,
    customers: bool = True,
    chunk_customers: int = 50_000,
    compression_level: int | None = None,
) -> EventShopFiles:
    """Stream a generated shop to Parquet files in ``out_dir``: ``events.parquet``, ``truth.parquet`` and
    (optionally) ``orders.parquet`` and ``customers.parquet``; one chunk of customers is in memory at a time.

    Give ``n_customers``, or ``n_events`` (about that many events: customers = n_events /
    :data:`EVENTS_PER_CUSTOMER`).
    """
    if (n_events is None) == (n_customers is None):
        raise ValueError("give exactly one of n_events and n_customers")
    if n_customers is None:
        assert n_events is not None
        n_customers = max(1, round(n_events / EVENTS_PER_CUSTOMER))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = EventShopFiles(
        out / "events.parquet",
        out / "truth.parquet",
        out / "orders.parquet" if orders else None,
        out / "customers.parquet" if customers else None,
    )
    paths = [files.events, files.truth, files.orders, files.customers]
    writers: list[pq.ParquetWriter | None] = [None, None, None, None]
    counts = [0, 0, 0, 0]
    try:
        for tables in iter_event_chunks(
            n_customers, seed=seed, segments=segments, start=start, days=days, banners=banners,
            chunk_customers=chunk_customers,
        ):  # fmt: skip
            for i, table in enumerate(tables):
                path = paths[i]
                if path is None:
                    continue
                w = writers[i]
                if w is None:
                    w = pq.ParquetWriter(
                        path.with_name(path.name + ".tmp"),
                        table.schema,
                        compression="zstd",
                        compression_level=compression_level,
                    )
                    writers[i] = w
                w.write_table(table)
                counts[i] += table.num_rows
    finally:
        for w in writers:
            if w is not None:
                w.close()
    for path in paths:
        if path is not None:
            path.with_name(path.name + ".tmp").replace(path)
    files.counts = dict(zip(("events", "customers", "order_lines", "customer_rows"), counts, strict=True))
    return files
