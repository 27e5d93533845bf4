"""Synthetic shops in the Online Retail layout.

Two generators live here:

* :func:`generate_shop` builds a small shop (thousands of customers) with *planted* customer segments and
  returns the order lines together with the ground truth (which customer belongs to which segment). It is
  meant for tests and demos: the segments are separated well enough that K-Means on standardised
  ``[log1p(recency_days), log1p(frequency), log1p(avg_order_value), tenure_days]`` recovers them.
* :func:`generate_lines` streams arbitrarily many order lines (10M, 50M, ...) as Arrow tables with
  Online Retail-like skew, for benchmarks; :func:`write_parquet` writes them to one Parquet file.

Both produce exactly the eight columns of the real UCI Online Retail file (see :data:`COLUMNS` and
:data:`ARROW_SCHEMA`) and are deterministic: the same arguments and seed give identical output.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "ARROW_SCHEMA",
    "COLUMNS",
    "DEFAULT_SEGMENTS",
    "GeneratedShop",
    "PlantedSegment",
    "generate_lines",
    "generate_shop",
    "write_parquet",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Column names of the Online Retail file, in order.
COLUMNS: tuple[str, ...] = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)

#: Arrow schema of the Online Retail Parquet file (names and types; no pandas metadata).
ARROW_SCHEMA: pa.Schema = pa.schema(
    [
        ("InvoiceNo", pa.string()),
        ("StockCode", pa.string()),
        ("Description", pa.string()),
        ("Quantity", pa.int64()),
        ("InvoiceDate", pa.timestamp("us")),
        ("UnitPrice", pa.float64()),
        ("CustomerID", pa.int64()),
        ("Country", pa.string()),
    ]
)


def _pandas_metadata_schema() -> pa.Schema:
    """ARROW_SCHEMA plus pandas metadata, so that pandas reads CustomerID as Int64 like the real file."""
    empty = pd.DataFrame(
        {
            "InvoiceNo": pd.array([], dtype="str"),
            "StockCode": pd.array([], dtype="str"),
            "Description": pd.array([], dtype="str"),
            "Quantity": np.array([], dtype=np.int64),
            "InvoiceDate": np.array([], dtype="datetime64[us]"),
            "UnitPrice": np.array([], dtype=np.float64),
            "CustomerID": pd.array([], dtype="Int64"),
            "Country": pd.array([], dtype="str"),
        }
    )
    metadata = pa.Schema.from_pandas(empty, preserve_index=False).metadata
    return ARROW_SCHEMA.with_metadata(metadata)


_ARROW_SCHEMA_WITH_PANDAS = _pandas_metadata_schema()

_FIRST_INVOICE = 536365  # the first InvoiceNo of the real file
_FIRST_CUSTOMER = 12346  # the smallest CustomerID of the real file
_US_PER_DAY = 86_400_000_000
_US_PER_MINUTE = 60_000_000


@dataclass(frozen=True)
class PlantedSegment:
    """One planted customer segment for :func:`generate_shop`.

    All day ranges are ``(low, high)`` in days before the ``end`` date (0 = the end date itself); values are
    drawn uniformly from the range for each customer and clipped to the shop's date range.

    Attributes:
        name: segment label written to ``GeneratedShop.truth["segment"]``.
        share: fraction of customers in this segment (shares are normalised to sum to 1).
        orders_per_year: expected orders per year between a customer's first and last order. The number of
            orders is ``min_orders + Poisson(max(0, orders_per_year * span_years - min_orders))``; 0 means
            exactly ``min_orders`` orders.
        mean_order_value: mean order value in GBP. Each customer gets a personal level around it
            (log-normal, sigma 0.25) and each order varies around that (log-normal, sigma 0.3).
        last_seen_days_ago: range of the customer's last order, in days before ``end`` (their recency).
        first_seen_days_ago: range of the customer's first order, in days before ``end`` (their tenure).
            Customers with a single order have their only order on their first-seen day.
        lines_per_order: mean number of distinct products per order (geometric distribution).
        min_orders: minimum number of orders per customer.
    """

    name: str
    share: float
    orders_per_year: float
    mean_order_value: float
    last_seen_days_ago: tuple[float, float]
    first_seen_days_ago: tuple[float, float]
    lines_per_order: float = 15.0
    min_orders: int = 1


#: Four well separated segments (recency, frequency, order value and tenure all differ).
DEFAULT_SEGMENTS: tuple[PlantedSegment, ...] = (
    PlantedSegment(
        name="champions",
        share=0.20,
        orders_per_year=25.0,
        mean_order_value=650.0,
        last_seen_days_ago=(0.0, 14.0),
        first_seen_days_ago=(300.0, 373.0),
        lines_per_order=20.0,
        min_orders=12,
    ),
    PlantedSegment(
        name="regulars",
        share=0.30,
        orders_per_year=8.0,
        mean_order_value=280.0,
        last_seen_days_ago=(15.0, 60.0),
        first_seen_days_ago=(180.0, 300.0),
        lines_per_order=15.0,
        min_orders=4,
    ),
    PlantedSegment(
        name="lapsed",
        share=0.25,
        orders_per_year=5.0,
        mean_order_value=400.0,
        last_seen_days_ago=(200.0, 330.0),
        first_seen_days_ago=(280.0, 373.0),
        lines_per_order=15.0,
        min_orders=3,
    ),
    PlantedSegment(
        name="one-off bargain",
        share=0.25,
        orders_per_year=0.0,
        mean_order_value=15.0,
        last_seen_days_ago=(20.0, 90.0),
        first_seen_days_ago=(20.0, 90.0),
        lines_per_order=4.0,
        min_orders=1,
    ),
)


@dataclass(frozen=True)
class GeneratedShop:
    """Output of :func:`generate_shop`.

    Attributes:
        transactions: order lines in the Online Retail layout (columns :data:`COLUMNS`; dtypes as pandas
            reads the real Parquet file: ``str`` strings, ``int64`` Quantity, ``datetime64[us]`` InvoiceDate,
            ``float64`` UnitPrice, nullable ``Int64`` CustomerID), sorted by InvoiceDate then InvoiceNo.
        truth: one row per generated customer, sorted by ``customer_id``: ``customer_id`` (int64) and
            ``segment`` (str, the :attr:`PlantedSegment.name`).
    """

    transactions: pd.DataFrame
    truth: pd.DataFrame


# --------------------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------------------

_COLOURS = (
    "RED", "BLUE", "PINK", "WHITE", "GREEN", "IVORY", "CREAM", "BLACK", "SILVER", "GOLD", "PURPLE",
    "ORANGE", "YELLOW", "VINTAGE", "RETRO", "PASTEL", "ANTIQUE", "RUSTIC", "SPOTTY", "STRIPED",
)  # fmt: skip
_THEMES = (
    "HEART", "REGENCY", "SPACEBOY", "DOLLY GIRL", "PAISLEY", "CHRISTMAS", "SKULL", "ROSE", "BIRD",
    "STAR", "OWL", "POLKADOT", "UNION JACK", "JUNGLE", "WOODLAND", "FAIRY CAKE", "SWALLOW", "LOVE",
    "GARDEN", "ENGLISH",
)  # fmt: skip
_ITEMS = (
    "T-LIGHT HOLDER", "LUNCH BAG", "CAKE CASES", "MUG", "JAM JAR", "CUSHION COVER", "DOORMAT",
    "PAPER CHAIN KIT", "BUNTING", "ALARM CLOCK", "TEA SET", "WATER BOTTLE", "NOTEBOOK", "GIFT BAG",
    "TISSUES", "CHOPSTICKS", "PICNIC BASKET", "PARASOL", "LANTERN", "SIGN", "TRINKET BOX", "FRAME",
    "COAT RACK", "HOT WATER BOTTLE", "BAKING SET", "CANDLE", "WRAP", "NAPKINS", "PLATE", "BOWL",
)  # fmt: skip

_COUNTRIES = (
    "United Kingdom", "Germany", "France", "EIRE", "Spain", "Netherlands", "Belgium", "Switzerland",
    "Portugal", "Australia", "Norway", "Italy", "Channel Islands", "Finland", "Cyprus", "Sweden",
    "Austria", "Denmark", "Japan", "Poland",
)  # fmt: skip
_COUNTRY_WEIGHTS = np.array([900.0, 18, 16, 15, 5, 4.5, 4, 4, 3, 2.5, 2, 1.5, 1.5, 1.5, 1.2, 1, 1, 1, 0.7, 0.7])

# Non-product codes of the real file with a typical unit price.
_SPECIAL_CODES = (
    ("POST", "POSTAGE", 18.0),
    ("DOT", "DOTCOM POSTAGE", 350.0),
    ("M", "Manual", 2.5),
    ("D", "Discount", 10.0),
    ("C2", "CARRIAGE", 50.0),
    ("BANK CHARGES", "Bank Charges", 15.0),
    ("AMAZONFEE", "AMAZON FEE", 120.0),
    ("CRUK", "CRUK Commission", 15.0),
    ("PADS", "PADS TO MATCH ALL CUSHIONS", 0.001),
    ("S", "SAMPLES", 5.0),
)
_SPECIAL_INDEX = {code: i for i, (code, _, _) in enumerate(_SPECIAL_CODES)}

# Quantities of product lines and how often they occur in the real file.
_QUANTITIES = np.array([1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 25, 36, 48, 72, 96, 100, 144])
_QUANTITY_WEIGHTS = np.array(
    [27.4, 15.1, 6.9, 7.1, 2.2, 7.5, 2.4, 4.1, 11.3, 0.8, 0.9, 4.4, 0.9, 0.6, 1.1, 0.4, 0.3, 0.3, 0.3]
)


@dataclass(frozen=True)
class _Catalogue:
    codes: npt.NDArray[np.object_]
    descriptions: npt.NDArray[np.object_]
    prices: FloatArray
    popularity: FloatArray  # probabilities, sums to 1, decreasing


def _make_catalogue(
    rng: np.random.Generator, n_products: int, *, zipf_offset: float, zipf_exponent: float
) -> _Catalogue:
    """Products with unique StockCodes and Descriptions, log-normal prices and Zipf-Mandelbrot popularity.

    Popularity of the product of rank ``r`` (1-based) is proportional to
    ``(r + zipf_offset) ** -zipf_exponent``.
    """
    if n_products < 1:
        raise ValueError("n_products must be at least 1")
    numbers = rng.choice(np.arange(10_000, 90_000), size=n_products, replace=False)
    suffix_letters = np.array(list("ABCDEFGHJKLMNPRSTW"), dtype=object)
    has_suffix = rng.random(n_products) < 0.15
    suffixes = np.where(has_suffix, suffix_letters[rng.integers(0, len(suffix_letters), n_products)], "")
    codes = np.array([f"{n}{s}" for n, s in zip(numbers.tolist(), suffixes.tolist(), strict=True)], dtype=object)

    n_combos = len(_COLOURS) * len(_THEMES) * len(_ITEMS)
    combos = rng.permutation(n_combos)[: min(n_products, n_combos)]
    descriptions: list[str] = []
    for i in range(n_products):
        c = int(combos[i % len(combos)])
        colour, rest = divmod(c, len(_THEMES) * len(_ITEMS))
        theme, item = divmod(rest, len(_ITEMS))
        text = f"{_COLOURS[colour]} {_THEMES[theme]} {_ITEMS[item]}"
        if i >= n_combos:  # more products than word combinations: keep descriptions unique
            text = f"{text} {i // n_combos + 1}"
        descriptions.append(text)

    prices = np.exp(rng.normal(np.log(2.1), 0.75, n_products))
    # Multiples of 5p, like most prices of the real file.
    prices = np.round(np.clip(np.round(prices * 20.0) / 20.0, 0.1, 60.0), 2).astype(np.float64)

    ranks = np.arange(1, n_products + 1, dtype=np.float64)
    weights = (ranks + zipf_offset) ** -zipf_exponent
    return _Catalogue(
        codes=codes,
        descriptions=np.array(descriptions, dtype=object),
        prices=prices,
        popularity=weights / weights.sum(),
    )


def _sample(rng: np.random.Generator, probabilities: FloatArray, size: int) -> IntArray:
    """Fast inverse-CDF sampling of indices ``0..len(probabilities)-1``."""
    cdf = np.cumsum(probabilities)
    cdf /= cdf[-1]
    idx = np.searchsorted(cdf, rng.random(size), side="right")
    out: IntArray = np.minimum(idx, len(probabilities) - 1).astype(np.int64)
    return out


def _quantity_table() -> tuple[IntArray, FloatArray]:
    return _QUANTITIES.astype(np.int64), _QUANTITY_WEIGHTS / _QUANTITY_WEIGHTS.sum()


# --------------------------------------------------------------------------------------------------------
# generate_shop
# --------------------------------------------------------------------------------------------------------


def _segment_counts(shares: FloatArray, n: int) -> IntArray:
    """Largest-remainder rounding of ``shares * n`` so that the counts sum to ``n``."""
    raw = shares / shares.sum() * n
    counts: IntArray = np.floor(raw).astype(np.int64)
    remainder = n - int(counts.sum())
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:remainder]] += 1
    return counts


def _order_times(
    rng: np.random.Generator, days_ago: IntArray, end_day: np.datetime64, start_day: np.datetime64
) -> npt.NDArray[np.datetime64]:
    """Timestamps in shop hours on the given days, moved off Saturdays (the real shop never sold then)."""
    days = end_day - days_ago.astype("timedelta64[D]")
    # 1970-01-01 was a Thursday, so (days + 3) % 7 == 5 is a Saturday.
    weekday = (days.astype(np.int64) + 3) % 7
    saturday = weekday == 5
    shifted = np.where(days - np.timedelta64(1, "D") >= start_day, days - np.timedelta64(1, "D"), days + 1)
    days = np.where(saturday, shifted, days)
    days = np.clip(days, start_day, end_day)
    minutes = rng.integers(8 * 60, 18 * 60, size=len(days_ago))
    out: npt.NDArray[np.datetime64] = days.astype("datetime64[us]") + minutes.astype("timedelta64[m]")
    return out


def _segment_preferences(
    rng: np.random.Generator, popularity: FloatArray, n_segments: int, n_preferred: int, weight: float
) -> FloatArray:
    """Per-segment product distributions: the global popularity mixed with a segment-specific favourite set.

    The favourite sets are disjoint and avoid the globally most popular products, so the top products of
    the segments differ.
    """
    n_products = len(popularity)
    n_preferred = max(1, min(n_preferred, (n_products - min(10, n_products // 2)) // max(n_segments, 1)))
    candidates = rng.permutation(np.arange(min(10, n_products // 2), n_products))
    probs: FloatArray = np.empty((n_segments, n_products), dtype=np.float64)
    for s in range(n_segments):
        preferred = candidates[s * n_preferred : (s + 1) * n_preferred]
        own = np.zeros(n_products, dtype=np.float64)
        own[preferred] = 1.0 / max(len(preferred), 1)
        probs[s] = (1.0 - weight) * popularity + weight * own
    return probs


def generate_shop(
    n_customers: int = 2000,
    *,
    seed: int = 0,
    segments: Sequence[PlantedSegment] = DEFAULT_SEGMENTS,
    start: str = "2010-12-01",
    end: str = "2011-12-09",
    n_products: int = 500,
    quirks: bool = False,
) -> GeneratedShop:
    """Generate a shop whose customers belong to planted segments.

    Args:
        n_customers: number of customers with a CustomerID (guest invoices added by ``quirks`` are extra).
        seed: seed of the numpy Generator; the same arguments give identical output.
        segments: the planted segments; their ``share`` values are normalised and rounded so that the segment
            sizes sum to ``n_customers`` exactly.
        start: first day of the shop's history (ISO date).
        end: last day of the shop's history (ISO date). Recency is naturally measured from ``end`` + 1 day.
        n_products: size of the product catalogue.
        quirks: add the real file's quirks at small rates: cancellation invoices (``C`` prefix, negative
            quantity, copying lines of an earlier invoice of the same customer), guest invoices with missing
            CustomerID (some with ``DOT`` postage lines), zero-price lines (half without Description),
            ``POST`` lines on some foreign orders, ``M`` manual lines and exact duplicate rows.

    Returns:
        The order lines and the per-customer truth. Without quirks every line is a clean purchase with
        positive quantity and price, one InvoiceNo per order.
    """
    if n_customers < 1:
        raise ValueError("n_customers must be at least 1")
    if not segments:
        raise ValueError("at least one segment is needed")
    rng = np.random.default_rng(seed)
    start_day = np.datetime64(start, "D")
    end_day = np.datetime64(end, "D")
    horizon = int((end_day - start_day).astype(np.int64))
    if horizon < 0:
        raise ValueError("end must not be before start")

    catalogue = _make_catalogue(rng, n_products, zipf_offset=2.0, zipf_exponent=0.9)
    seg_probs = _segment_preferences(rng, catalogue.popularity, len(segments), n_preferred=20, weight=0.6)

    # ---- customers ----
    shares = np.array([s.share for s in segments], dtype=np.float64)
    if (shares < 0).any() or shares.sum() <= 0:
        raise ValueError("segment shares must be non-negative and not all zero")
    counts = _segment_counts(shares, n_customers)
    cust_seg = rng.permutation(np.repeat(np.arange(len(segments)), counts))
    id_pool = max(2 * n_customers, 6000)
    cust_id = _FIRST_CUSTOMER + np.sort(rng.choice(id_pool, size=n_customers, replace=False)).astype(np.int64)
    cust_country = _sample(rng, _COUNTRY_WEIGHTS / _COUNTRY_WEIGHTS.sum(), n_customers)

    def seg_attr(values: Sequence[float]) -> FloatArray:
        out: FloatArray = np.asarray(values, dtype=np.float64)[cust_seg]
        return out

    last_lo = seg_attr([s.last_seen_days_ago[0] for s in segments])
    last_hi = seg_attr([s.last_seen_days_ago[1] for s in segments])
    first_lo = seg_attr([s.first_seen_days_ago[0] for s in segments])
    first_hi = seg_attr([s.first_seen_days_ago[1] for s in segments])
    first_ago = np.floor(np.clip(rng.uniform(first_lo, first_hi), 0, horizon)).astype(np.int64)
    last_ago = np.floor(np.clip(rng.uniform(last_lo, last_hi), 0, horizon)).astype(np.int64)
    last_ago = np.minimum(last_ago, first_ago)
    span_years = (first_ago - last_ago) / 365.0
    min_orders = seg_attr([float(s.min_orders) for s in segments]).astype(np.int64)
    extra = np.maximum(seg_attr([s.orders_per_year for s in segments]) * span_years - min_orders, 0.0)
    n_orders = np.maximum(min_orders + rng.poisson(extra), 1).astype(np.int64)
    last_ago = np.where(n_orders == 1, first_ago, last_ago)
    cust_aov = seg_attr([s.mean_order_value for s in segments]) * np.exp(rng.normal(-0.03, 0.25, n_customers))

    # Each customer's own favourite products, which they buy again and again.
    n_fav = 3 + rng.poisson(8.0, n_customers)
    fav_start = np.concatenate([[0], np.cumsum(n_fav)[:-1]]).astype(np.int64)
    fav_seg = np.repeat(cust_seg, n_fav)
    favourites = np.empty(int(n_fav.sum()), dtype=np.int64)
    for s in range(len(segments)):
        mask = fav_seg == s
        favourites[mask] = _sample(rng, seg_probs[s], int(mask.sum()))

    # ---- orders ----
    n_total_orders = int(n_orders.sum())
    order_cust = np.repeat(np.arange(n_customers), n_orders)
    order_rank = np.arange(n_total_orders) - np.repeat(np.cumsum(n_orders) - n_orders, n_orders)
    o_first = first_ago[order_cust]
    o_last = last_ago[order_cust]
    middle = np.floor(o_last + rng.random(n_total_orders) * (o_first - o_last + 1)).astype(np.int64)
    middle = np.minimum(middle, o_first)
    order_ago = np.where(order_rank == 0, o_first, np.where(order_rank == n_orders[order_cust] - 1, o_last, middle))
    order_time = _order_times(rng, order_ago, end_day, start_day)
    order_value = cust_aov[order_cust] * np.exp(rng.normal(-0.045, 0.3, n_total_orders))
    mean_lines = seg_attr([s.lines_per_order for s in segments])[order_cust]
    n_lines = np.minimum(rng.geometric(1.0 / np.maximum(mean_lines, 1.0)), min(250, n_products))

    # ---- lines ----
    # Draw more candidates than needed, then keep the first n_lines distinct products of each order.
    line_order = np.repeat(np.arange(n_total_orders), 2 * n_lines + 4)
    line_cust = order_cust[line_order]
    line_seg = cust_seg[line_cust]
    product = np.empty(len(line_order), dtype=np.int64)
    for s in range(len(segments)):
        mask = line_seg == s
        product[mask] = _sample(rng, seg_probs[s], int(mask.sum()))
    from_fav = rng.random(len(line_order)) < 0.65
    fav_pick = fav_start[line_cust] + np.floor(rng.random(len(line_order)) * n_fav[line_cust]).astype(np.int64)
    product = np.where(from_fav, favourites[fav_pick], product)
    # One line per product within an order, as in the real file (almost always).
    _, keep = np.unique(line_order * n_products + product, return_index=True)
    keep.sort()
    line_order = line_order[keep]
    product = product[keep]
    group_start = np.searchsorted(line_order, line_order, side="left")
    keep_n = (np.arange(len(line_order)) - group_start) < n_lines[line_order]
    line_order = line_order[keep_n]
    product = product[keep_n]
    price = catalogue.prices[product]
    share = rng.exponential(1.0, len(line_order))
    share /= np.bincount(line_order, weights=share, minlength=n_total_orders)[line_order]
    raw_qty = order_value[line_order] * share / price
    quantity = np.maximum(np.round(raw_qty), 1).astype(np.int64)
    quantity = np.where(quantity >= 10, np.maximum(np.round(raw_qty / 6.0) * 6, 6), quantity).astype(np.int64)

    lines = pd.DataFrame(
        {
            "order": line_order,
            "product": product,
            "Quantity": quantity,
            "UnitPrice": price,
            "cancel": np.zeros(len(line_order), dtype=bool),
        }
    )
    orders = pd.DataFrame(
        {
            "time": order_time,
            "customer": order_cust,
            "cancel": np.zeros(n_total_orders, dtype=bool),
        }
    )
    special_rows: list[pd.DataFrame] = []
    if quirks:
        lines, orders, special_rows = _add_quirks(rng, lines, orders, catalogue, cust_country, start_day, end_day)

    transactions = _assemble(rng, lines, orders, special_rows, catalogue, cust_id, cust_country, quirks)
    truth = pd.DataFrame(
        {
            "customer_id": cust_id,
            "segment": pd.array([segments[int(s)].name for s in cust_seg], dtype="str"),
        }
    )
    return GeneratedShop(transactions=transactions, truth=truth)


def _add_quirks(
    rng: np.random.Generator,
    lines: pd.DataFrame,
    orders: pd.DataFrame,
    catalogue: _Catalogue,
    cust_country: IntArray,
    start_day: np.datetime64,
    end_day: np.datetime64,
) -> tuple[pd.DataFrame, pd.DataFrame, list[pd.DataFrame]]:
    """Append cancellations, guest invoices and odd lines; return (lines, orders, extra special lines)."""
    n_orders = len(orders)
    n_products = len(catalogue.prices)
    end_ts = (end_day + np.timedelta64(1, "D")).astype("datetime64[us]") - np.timedelta64(1, "m")
    new_orders: list[pd.DataFrame] = [orders]
    new_lines: list[pd.DataFrame] = [lines]

    # Cancellations: a later "C" invoice of the same customer negating 1-3 lines of one of their orders.
    cancelled = np.flatnonzero(rng.random(n_orders) < 0.03)
    if len(cancelled):
        delay = rng.integers(0, 30 * 24 * 60, len(cancelled)).astype("timedelta64[m]")
        times = orders["time"].to_numpy()[cancelled] + delay
        c_orders = pd.DataFrame(
            {
                "time": np.minimum(times, end_ts),
                "customer": orders["customer"].to_numpy()[cancelled],
                "cancel": np.ones(len(cancelled), dtype=bool),
            },
            index=np.arange(n_orders, n_orders + len(cancelled)),
        )
        new_orders.append(c_orders)
        source = lines[lines["order"].isin(cancelled)].copy()
        source["pos"] = source.groupby("order").cumcount()
        n_take = pd.Series(rng.integers(1, 4, len(cancelled)), index=cancelled)
        source = source[source["pos"] < n_take.reindex(source["order"]).to_numpy()]
        remap = pd.Series(c_orders.index.to_numpy(), index=cancelled)
        c_lines = pd.DataFrame(
            {
                "order": remap.reindex(source["order"]).to_numpy(),
                "product": source["product"].to_numpy(),
                "Quantity": -source["Quantity"].to_numpy(),
                "UnitPrice": source["UnitPrice"].to_numpy(),
                "cancel": np.ones(len(source), dtype=bool),
            }
        )
        new_lines.append(c_lines)
    orders = pd.concat(new_orders)

    # Guest invoices (missing CustomerID), mostly from the UK, some with a DOT postage line.
    n_guest = max(1, round(0.04 * n_orders))
    base = len(orders)
    horizon = int((end_day - start_day).astype(np.int64))
    g_times = _order_times(rng, np.sort(rng.integers(0, horizon + 1, n_guest)), end_day, start_day)
    g_orders = pd.DataFrame(
        {"time": g_times, "customer": np.full(n_guest, -1), "cancel": np.zeros(n_guest, dtype=bool)},
        index=np.arange(base, base + n_guest),
    )
    g_n_lines = rng.geometric(1.0 / 15.0, n_guest)
    g_order = np.repeat(g_orders.index.to_numpy(), g_n_lines)
    g_product = _sample(rng, catalogue.popularity, len(g_order))
    _, keep = np.unique(g_order * n_products + g_product, return_index=True)
    keep.sort()
    g_order, g_product = g_order[keep], g_product[keep]
    g_lines = pd.DataFrame(
        {
            "order": g_order,
            "product": g_product,
            "Quantity": rng.integers(1, 4, len(g_order)),
            "UnitPrice": np.round(catalogue.prices[g_product] * 2.0, 2),  # guests pay retail prices
            "cancel": np.zeros(len(g_order), dtype=bool),
        }
    )
    orders = pd.concat([orders, g_orders])
    lines = pd.concat([*new_lines, g_lines], ignore_index=True)

    specials: list[pd.DataFrame] = []

    def special(order_ids: IntArray, code: str, quantity: IntArray, price: FloatArray) -> None:
        specials.append(
            pd.DataFrame(
                {
                    "order": order_ids,
                    "code": code,
                    "Quantity": quantity.astype(np.int64),
                    "UnitPrice": price.astype(np.float64),
                }
            )
        )

    dot = g_orders.index.to_numpy()[rng.random(n_guest) < 0.3]
    dot_price = np.round(np.exp(rng.normal(5.5, 0.6, len(dot))), 2).astype(np.float64)
    special(dot, "DOT", np.ones(len(dot), dtype=np.int64), dot_price)
    purchase = orders.index.to_numpy()[(orders["customer"].to_numpy() >= 0) & ~orders["cancel"].to_numpy()]
    customer = orders.loc[purchase, "customer"].to_numpy()
    foreign = purchase[(cust_country[customer] != 0) & (rng.random(len(purchase)) < 0.1)]
    special(foreign, "POST", rng.integers(1, 3, len(foreign)), np.full(len(foreign), 18.0))
    manual = purchase[rng.random(len(purchase)) < 0.003]
    manual_price = np.round(np.exp(rng.normal(0.5, 1.0, len(manual))), 2).astype(np.float64)
    special(manual, "M", np.ones(len(manual), dtype=np.int64), manual_price)

    # Zero-price lines (free samples / data errors) inside existing purchase invoices.
    zero = purchase[rng.random(len(purchase)) < 0.01]
    z_lines = pd.DataFrame(
        {
            "order": zero,
            "product": _sample(rng, catalogue.popularity, len(zero)),
            "Quantity": rng.integers(1, 13, len(zero)),
            "UnitPrice": np.zeros(len(zero)),
            "cancel": np.zeros(len(zero), dtype=bool),
        }
    )
    lines = pd.concat([lines, z_lines], ignore_index=True)
    return lines, orders, specials


def _assemble(
    rng: np.random.Generator,
    lines: pd.DataFrame,
    orders: pd.DataFrame,
    special_rows: list[pd.DataFrame],
    catalogue: _Catalogue,
    cust_id: IntArray,
    cust_country: IntArray,
    quirks: bool,
) -> pd.DataFrame:
    """Number the invoices by time and build the Online Retail frame."""
    orders = orders.sort_values(["time", "customer"], kind="stable")
    invoice_no = pd.Series(np.arange(_FIRST_INVOICE, _FIRST_INVOICE + len(orders)), index=orders.index)

    code = catalogue.codes[lines["product"].to_numpy()]
    desc = catalogue.descriptions[lines["product"].to_numpy()].copy()
    if quirks:
        missing = (lines["UnitPrice"].to_numpy() == 0) & (rng.random(len(lines)) < 0.5)
        desc[missing] = None
    parts = [
        pd.DataFrame(
            {
                "order": lines["order"].to_numpy(),
                "StockCode": code,
                "Description": desc,
                "Quantity": lines["Quantity"].to_numpy(),
                "UnitPrice": lines["UnitPrice"].to_numpy(),
            }
        )
    ]
    for sp in special_rows:
        if len(sp) == 0:
            continue
        idx = _SPECIAL_INDEX[str(sp["code"].iloc[0])]
        parts.append(
            pd.DataFrame(
                {
                    "order": sp["order"].to_numpy(),
                    "StockCode": np.full(len(sp), _SPECIAL_CODES[idx][0], dtype=object),
                    "Description": np.full(len(sp), _SPECIAL_CODES[idx][1], dtype=object),
                    "Quantity": sp["Quantity"].to_numpy(),
                    "UnitPrice": sp["UnitPrice"].to_numpy(),
                }
            )
        )
    df = pd.concat(parts, ignore_index=True)
    order_ids = df["order"].to_numpy()
    o_customer = orders["customer"].reindex(order_ids).to_numpy()
    o_cancel = orders["cancel"].reindex(order_ids).to_numpy().astype(bool)
    numbers = invoice_no.reindex(order_ids).to_numpy().astype(str).astype(object)
    numbers[o_cancel] = "C" + numbers[o_cancel]
    guest = o_customer < 0
    customer = np.where(guest, 0, cust_id[np.where(guest, 0, o_customer)])
    country_idx = np.where(guest, 0, cust_country[np.where(guest, 0, o_customer)])

    out = pd.DataFrame(
        {
            "InvoiceNo": pd.array(numbers, dtype="str"),
            "StockCode": pd.array(df["StockCode"].to_numpy(), dtype="str"),
            "Description": pd.array(df["Description"].to_numpy(), dtype="str"),
            "Quantity": df["Quantity"].to_numpy().astype(np.int64),
            "InvoiceDate": orders["time"].reindex(order_ids).to_numpy().astype("datetime64[us]"),
            "UnitPrice": df["UnitPrice"].to_numpy().astype(np.float64),
            "CustomerID": pd.arrays.IntegerArray(customer.astype(np.int64), guest),
            "Country": pd.array(np.array(_COUNTRIES, dtype=object)[country_idx], dtype="str"),
            "_seq": invoice_no.reindex(order_ids).to_numpy(),
        }
    )
    if quirks:
        dup = out.iloc[np.flatnonzero(rng.random(len(out)) < 0.01)]
        out = pd.concat([out, dup])
    out = out.sort_values(["InvoiceDate", "_seq"], kind="stable").drop(columns="_seq").reset_index(drop=True)
    return out


# --------------------------------------------------------------------------------------------------------
# generate_lines / write_parquet
# --------------------------------------------------------------------------------------------------------

_BENCH_START = np.datetime64("2010-12-01", "D")
_BENCH_DAYS = 374  # 2010-12-01 .. 2011-12-09 inclusive
_BENCH_N_PRODUCTS = 4000
_BENCH_LINES_PER_INVOICE = 22.0
_BENCH_LINES_PER_CANCEL = 2.4
_BENCH_CANCEL_INVOICES = 0.085  # -> about 1% of rows
_BENCH_GUEST_INVOICES = 0.21  # -> about 20% of rows
_BENCH_SPECIAL_ROWS = 0.004
_BENCH_ZERO_PRICE_ROWS = 0.004
_BENCH_DUPLICATE_ROWS = 0.01
_BENCH_LINES_PER_CUSTOMER = 72.0  # configured; ~25% of customers never appear, so ~100 realised


_LOOKUP_BITS = 20  # inverse-CDF lookup tables of 2**20 entries


def _lookup_table(probabilities: FloatArray) -> npt.NDArray[np.int32]:
    """Quantised inverse CDF: ``table[randint(0, 2**20)]`` is ``i`` with probability ~``probabilities[i]``."""
    size = 1 << _LOOKUP_BITS
    cdf = np.cumsum(probabilities)
    cdf /= cdf[-1]
    points = (np.arange(size, dtype=np.float64) + 0.5) / size
    table: npt.NDArray[np.int32] = np.minimum(
        np.searchsorted(cdf, points, side="right"), len(probabilities) - 1
    ).astype(np.int32)
    return table


@dataclass(frozen=True)
class _BenchSetup:
    codes: pa.Array
    descriptions: pa.Array
    prices: FloatArray
    product_table: npt.NDArray[np.int32]
    n_regular: int
    customer_cdf: FloatArray
    customer_country: IntArray
    countries: pa.Array
    quantity_values: IntArray
    quantity_table: npt.NDArray[np.int32]


def _bench_setup(seed: int, n_rows: int) -> _BenchSetup:
    rng = np.random.default_rng([seed, 1])
    cat = _make_catalogue(rng, _BENCH_N_PRODUCTS, zipf_offset=250.0, zipf_exponent=2.0)
    codes = np.concatenate([cat.codes, np.array([c for c, _, _ in _SPECIAL_CODES], dtype=object)])
    descs = np.concatenate([cat.descriptions, np.array([d for _, d, _ in _SPECIAL_CODES], dtype=object)])
    prices = np.concatenate([cat.prices, np.array([p for _, _, p in _SPECIAL_CODES])])
    # Identified rows are ~80% of all rows; aim at ~100 of them per customer.
    n_customers = max(1, round(n_rows * (1.0 - _BENCH_GUEST_INVOICES) / _BENCH_LINES_PER_CUSTOMER))
    # Heavy-tailed customers: log-normal weights (sigma 1.3 gives the real file's mean/median ratio ~2.2).
    weights = np.exp(rng.normal(0.0, 1.3, n_customers))
    country_p = _COUNTRY_WEIGHTS / _COUNTRY_WEIGHTS.sum()
    qv, qp = _quantity_table()
    return _BenchSetup(
        codes=pa.array(codes, type=pa.string()),
        descriptions=pa.array(descs, type=pa.string()),
        prices=prices,
        product_table=_lookup_table(cat.popularity),
        n_regular=_BENCH_N_PRODUCTS,
        customer_cdf=np.cumsum(weights / weights.sum()),
        customer_country=_sample(rng, country_p, n_customers),
        countries=pa.array(list(_COUNTRIES), type=pa.string()),
        quantity_values=qv,
        quantity_table=_lookup_table(qp),
    )


def _draw(rng: np.random.Generator, cdf: FloatArray, size: int) -> IntArray:
    idx = np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right")
    out: IntArray = np.minimum(idx, len(cdf) - 1).astype(np.int64)
    return out


def _bench_chunk(
    setup: _BenchSetup, rng: np.random.Generator, row_offset: int, n: int, n_total: int, first_invoice: int
) -> tuple[pa.Table, int]:
    """One chunk of ``n`` rows from global row ``row_offset``; returns it and the next invoice number."""
    # Invoices: kind first, then size; keep drawing until the chunk is covered.
    est = int(n / (_BENCH_LINES_PER_INVOICE * 0.85)) + 16
    cancel = np.empty(0, dtype=bool)
    sizes = np.empty(0, dtype=np.int64)
    while int(sizes.sum()) < n:
        more_cancel = rng.random(est) < _BENCH_CANCEL_INVOICES
        more_sizes = np.where(
            more_cancel,
            rng.geometric(1.0 / _BENCH_LINES_PER_CANCEL, est),
            rng.geometric(1.0 / _BENCH_LINES_PER_INVOICE, est),
        )
        cancel = np.concatenate([cancel, more_cancel])
        sizes = np.concatenate([sizes, more_sizes])
    ends = np.cumsum(sizes)
    n_inv = int(np.searchsorted(ends, n, side="left")) + 1
    sizes = sizes[:n_inv].copy()
    sizes[-1] -= int(ends[n_inv - 1]) - n
    cancel = cancel[:n_inv]
    guest = (~cancel) & (rng.random(n_inv) < _BENCH_GUEST_INVOICES)
    customer = _draw(rng, setup.customer_cdf, n_inv)
    country = np.where(guest, np.where(rng.random(n_inv) < 0.95, 0, 3), setup.customer_country[customer])

    # Invoice times increase with the row position: the file is sorted by date like the real one.
    inv_start = row_offset + np.concatenate([[0], np.cumsum(sizes)[:-1]])
    t = inv_start / max(n_total, 1) * _BENCH_DAYS
    day = np.floor(t)
    minute = np.floor((t - day) * 600.0) + 480.0  # 08:00 .. 18:00
    inv_time_us = (
        _BENCH_START.astype("datetime64[us]").astype(np.int64)
        + day.astype(np.int64) * _US_PER_DAY
        + minute.astype(np.int64) * _US_PER_MINUTE
    )
    inv_str = pc.cast(pa.array(np.arange(first_invoice, first_invoice + n_inv, dtype=np.int64)), pa.string())
    inv_str = pc.if_else(pa.array(cancel), pc.binary_join_element_wise("C", inv_str, ""), inv_str)
    row_inv = np.repeat(np.arange(n_inv, dtype=np.int32), sizes)

    # One uniform per row decides the rare row events, which are mutually exclusive.
    u = rng.random(n, dtype=np.float32)
    t_dup = _BENCH_DUPLICATE_ROWS
    t_special = t_dup + _BENCH_SPECIAL_ROWS
    t_zero = t_special + _BENCH_ZERO_PRICE_ROWS
    t_huge = t_zero + 1e-4
    # Exact duplicates: a row copies its predecessor (a run of duplicates copies the row before the run).
    is_dup = u < t_dup
    is_dup[0] = False
    src = np.maximum.accumulate(np.where(is_dup, 0, np.arange(n, dtype=np.int32)))
    bits = rng.integers(0, 1 << _LOOKUP_BITS, size=(2, n), dtype=np.int32)
    product = setup.product_table[bits[0]]
    special = (u >= t_dup) & (u < t_special)
    if special.any():
        product[special] = setup.n_regular + rng.integers(0, len(_SPECIAL_CODES), int(special.sum()))
    quantity = setup.quantity_values[setup.quantity_table[bits[1]]]
    huge = (u >= t_zero) & (u < t_huge)
    quantity[huge] *= 100
    price = setup.prices[product]
    discount = u >= 0.85
    price[discount] = np.round(price[discount] * 0.85, 2)
    zero = (u >= t_special) & (u < t_zero)
    price[zero] = 0.0
    no_desc = zero & (u < t_special + 0.6 * _BENCH_ZERO_PRICE_ROWS)
    quantity = np.where(cancel[row_inv], -quantity, quantity)

    row_inv, product, quantity, price, no_desc = (
        row_inv[src],
        product[src],
        quantity[src],
        price[src],
        no_desc[src],
    )
    product_arr = pa.array(product)
    desc = setup.descriptions.take(product_arr)
    if no_desc.any():
        desc = pc.if_else(pa.array(no_desc), pa.scalar(None, pa.string()), desc)
    row_inv_arr = pa.array(row_inv)
    table = pa.table(
        [
            inv_str.take(row_inv_arr),
            setup.codes.take(product_arr),
            desc,
            pa.array(quantity, type=pa.int64()),
            pa.array(inv_time_us[row_inv], type=pa.int64()).view(pa.timestamp("us")),
            pa.array(price, type=pa.float64()),
            pa.array(_FIRST_CUSTOMER + customer[row_inv], type=pa.int64(), mask=guest[row_inv]),
            setup.countries.take(pa.array(country.astype(np.int32)[row_inv])),
        ],
        schema=_ARROW_SCHEMA_WITH_PANDAS,
    )
    return table, first_invoice + n_inv


def generate_lines(n_rows: int, *, seed: int = 0, chunk_rows: int = 2_000_000) -> Iterator[pa.Table]:
    """Stream ``n_rows`` Online Retail-like order lines as Arrow tables of at most ``chunk_rows`` rows.

    The tables have exactly :data:`ARROW_SCHEMA` (the real Parquet file's names and types). The data mimic
    the real file's skew: about 100 identified lines per customer with log-normal (heavy-tailed) customer
    activity, ~4,000 StockCodes with Zipf-Mandelbrot popularity, ~22 lines per invoice, ~1% of rows in
    cancellation invoices (``C`` prefix, negative quantity), ~20% of rows in guest invoices with missing
    CustomerID, ~0.4% non-product codes (POST, DOT, M, ...), ~0.4% zero prices and ~1% exact duplicates.
    Rows are ordered by InvoiceDate (2010-12-01 .. 2011-12-09, shop hours). Only one chunk is in memory at a
    time. The output depends on ``seed`` and ``chunk_rows``, nothing else.
    """
    if n_rows < 0:
        raise ValueError("n_rows must be non-negative")
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be positive")
    setup = _bench_setup(seed, n_rows)
    invoice = _FIRST_INVOICE
    offset = 0
    chunk_index = 0
    while offset < n_rows:
        n = min(chunk_rows, n_rows - offset)
        rng = np.random.default_rng([seed, 2, chunk_index])
        table, invoice = _bench_chunk(setup, rng, offset, n, n_rows, invoice)
        yield table
        offset += n
        chunk_index += 1


def write_parquet(
    path: str | Path,
    n_rows: int,
    seed: int = 0,
    *,
    chunk_rows: int = 2_000_000,
    compression_level: int | None = None,
) -> Path:
    """Stream :func:`generate_lines` into one zstd-compressed Parquet file and return its path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(
        out, _ARROW_SCHEMA_WITH_PANDAS, compression="zstd", compression_level=compression_level
    ) as writer:
        for table in generate_lines(n_rows, seed=seed, chunk_rows=chunk_rows):
            writer.write_table(table)
    return out


#: Provenance of the bundled sample (also in ``src/shopseg/data/SAMPLE.md``).
SAMPLE_PROVENANCE = (
    "600 whole customers (every line) of the UCI Online Retail data set (Daqing Chen, London South Bank "
    "University; https://archive.ics.uci.edu/dataset/352/online+retail; CC BY 4.0), plus 12% of the invoices "
    "without a customer id and the 'A' adjustments, in the Kaggle layout (ISO-8859-1, US dates, float ids). "
    "Rebuilt by scripts/make_sample.py."
)


def sample_path() -> Path:
    """Path of the bundled real sample (a slice of Online Retail, CC BY 4.0)."""
    from importlib import resources

    return Path(str(resources.files("shopseg").joinpath("data", "online_retail_sample.csv.gz")))
