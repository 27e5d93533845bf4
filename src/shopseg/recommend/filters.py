"""Business filters: products that must never be recommended.

* non-product lines: product codes in a list or matching SQL LIKE patterns (postage, fees, gift vouchers …);
* out-of-catalogue products: not sold in the last ``active_days`` before ``as_of``, or absent from a catalogue
  file (CSV/Parquet with a ``product_id`` column, or one column of ids);
* categories: products whose (most frequent) category is listed;
* price bounds: products whose median unit price is below ``min_price`` or above ``max_price``.

:func:`allowed_products` turns the rules into a mask over a product list, with the number of products each
rule removed (the first rule that applies, in the order above).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from shopseg.backends.duckdb import DuckDBBackend
from shopseg.errors import ConfigError, DataError
from shopseg.recommend.base import BoolArray, StrArray

__all__ = ["ItemFilter", "allowed_products"]


@dataclass
class ItemFilter:
    """Which products may be recommended (see the module docstring). The default allows every product."""

    exclude_codes: list[str] = field(default_factory=list)
    exclude_patterns: list[str] = field(default_factory=list)
    exclude_categories: list[str] = field(default_factory=list)
    min_price: float | None = None
    max_price: float | None = None
    active_days: int | None = None
    catalogue: Path | None = None

    def __post_init__(self) -> None:
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ConfigError(f"min_price ({self.min_price}) is above max_price ({self.max_price})")
        if self.active_days is not None and self.active_days < 1:
            raise ConfigError(f"active_days must be at least 1, got {self.active_days}")
        if self.catalogue is not None and not Path(self.catalogue).is_file():
            raise ConfigError(f"catalogue file '{self.catalogue}' not found; give a CSV or Parquet of product ids")

    @property
    def active(self) -> bool:
        return bool(
            self.exclude_codes
            or self.exclude_patterns
            or self.exclude_categories
            or self.min_price is not None
            or self.max_price is not None
            or self.active_days is not None
            or self.catalogue is not None
        )


def _lit(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _catalogue_ids(backend: DuckDBBackend, path: Path) -> str:
    p = str(path).replace("'", "''")
    reader = "read_parquet" if path.suffix.lower() in (".parquet", ".pq") else "read_csv_auto"
    cols = backend.columns_of(f"SELECT * FROM {reader}('{p}') LIMIT 0")
    if not cols:
        raise DataError(f"catalogue file '{path}' has no columns")
    col = next((c for c in cols if c.lower().replace(" ", "_") in ("product_id", "stockcode", "sku")), cols[0])
    return f"SELECT DISTINCT CAST(\"{col}\" AS VARCHAR) AS id FROM {reader}('{p}')"


def allowed_products(
    backend: DuckDBBackend,
    products: StrArray,
    rules: ItemFilter,
    *,
    as_of: datetime | None = None,
    table: str = "transactions",
    has_category: bool = True,
) -> tuple[BoolArray, dict[str, int]]:
    """Mask over ``products`` (True = may be recommended) and the count removed per rule."""
    if not rules.active or len(products) == 0:
        return np.ones(len(products), dtype=bool), {}
    backend.create_table(
        "rec_filter_products",
        pa.table(
            {"id": pa.array(np.asarray(products, dtype=object), type=pa.string()), "pos": np.arange(len(products))}
        ),
    )
    conds: list[tuple[str, str]] = []
    if rules.exclude_codes or rules.exclude_patterns:
        parts = []
        if rules.exclude_codes:
            parts.append(f"upper(p.id) IN ({', '.join(_lit(c.upper()) for c in rules.exclude_codes)})")
        parts += [f"p.id ILIKE {_lit(pat)}" for pat in rules.exclude_patterns]
        conds.append(("non_product", " OR ".join(parts)))
    if rules.catalogue is not None:
        conds.append(("not_in_catalogue", f"p.id NOT IN ({_catalogue_ids(backend, Path(rules.catalogue))})"))
    if rules.active_days is not None:
        if as_of is None:
            raise ConfigError("active_days needs as_of")
        since = f"TIMESTAMP '{as_of:%Y-%m-%d %H:%M:%S}' - INTERVAL {int(rules.active_days)} DAY"
        conds.append(("not_sold_recently", f"coalesce(s.last_ts < {since}, true)"))
    if rules.exclude_categories:
        if not has_category:
            raise ConfigError("recommend.exclude_categories is set but the input has no category column")
        cats = ", ".join(_lit(c.lower()) for c in rules.exclude_categories)
        conds.append(("excluded_category", f"lower(s.category) IN ({cats})"))
    if rules.min_price is not None:
        conds.append(("below_min_price", f"s.price < {float(rules.min_price)}"))
    if rules.max_price is not None:
        conds.append(("above_max_price", f"s.price > {float(rules.max_price)}"))
    category = "mode(category)" if has_category else "NULL"
    case = " ".join(f"WHEN {cond} THEN '{name}'" for name, cond in conds)
    frame = backend.df(
        f"WITH s AS (SELECT product_id AS id, max(ts) AS last_ts, median(unit_price) AS price, {category} AS category "
        f"FROM {table} WHERE product_id IS NOT NULL GROUP BY 1) "
        f"SELECT p.pos, CASE {case} ELSE NULL END AS reason FROM rec_filter_products p LEFT JOIN s USING (id) "
        "ORDER BY p.pos"
    )
    backend.execute("DROP TABLE IF EXISTS rec_filter_products")
    reason = frame["reason"].to_numpy()
    mask = np.asarray([r is None or (isinstance(r, float) and np.isnan(r)) for r in reason], dtype=bool)
    counts = frame["reason"].dropna().value_counts().to_dict()
    return mask, {str(k): int(v) for k, v in counts.items()}
