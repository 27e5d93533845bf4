"""Typed run configuration: a TOML file plus command-line overrides, validated once by pydantic.

Every setting has a default and a description; ``docs/configuration.md`` is generated from this module
and a test checks it is current.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shopseg.errors import ConfigError
from shopseg.schema import TRANSACTION_COLUMNS

DEFAULT_NON_PRODUCT_CODES: tuple[str, ...] = (
    "POST",
    "DOT",
    "M",
    "D",
    "S",
    "B",
    "C2",
    "CRUK",
    "PADS",
    "BANK CHARGES",
    "AMAZONFEE",
)
DEFAULT_NON_PRODUCT_PATTERNS: tuple[str, ...] = ("gift_%",)
DEFAULT_SEGMENT_FEATURES: tuple[str, ...] = ("recency_days", "frequency", "avg_order_value", "tenure_days")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InputConfig(_Section):
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Explicit mapping canonical name -> source column, e.g. {customer_id = 'Kunde'}; "
        "automatic mapping fills the rest.",
    )
    delimiter: str | None = Field(None, description="CSV delimiter; detected when unset ('\\s+' = runs of spaces).")
    encoding: str | None = Field(None, description="CSV text encoding; detected when unset.")
    header: bool = Field(True, description="Whether CSV files start with a header line.")
    names: list[str] | None = Field(
        None, description="Column names for CSV files without a header (canonical names map directly)."
    )
    date_format: str | None = Field(
        None, description="strptime format of the date column; detected from the values when unset."
    )
    sheet: str | None = Field(None, description="Excel sheet to read; the first sheet when unset.")

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, v: dict[str, str]) -> dict[str, str]:
        known = {c.name for c in TRANSACTION_COLUMNS}
        bad = sorted(set(v) - known)
        if bad:
            raise ValueError(f"unknown canonical column(s) {bad}; known: {sorted(known)}")
        return v


class CleanConfig(_Section):
    non_product_codes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NON_PRODUCT_CODES),
        description="Product codes that are not products (postage, fees, manual lines); case-insensitive.",
    )
    non_product_patterns: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NON_PRODUCT_PATTERNS),
        description="SQL LIKE patterns of non-product codes (case-insensitive), e.g. 'gift_%'.",
    )
    outliers: Literal["off", "flag", "remove"] = Field(
        "off",
        description="Outlier customers by spend: off, flag them in the CRM file, or remove (quarantine).",
    )
    outlier_method: Literal["iqr", "mad"] = Field(
        "mad", description="iqr: above Q3 + t*IQR of log spend; mad: robust z-score of log spend above t."
    )
    outlier_threshold: float = Field(3.5, gt=0, description="t for the outlier rule.")


class FeaturesConfig(_Section):
    as_of: datetime | None = Field(
        None, description="Reference time for recency/tenure; default: the day after the last purchase."
    )

    @field_validator("as_of", mode="before")
    @classmethod
    def _parse_date(cls, v: Any) -> Any:
        if isinstance(v, date) and not isinstance(v, datetime):
            return datetime(v.year, v.month, v.day)
        return v


class SegmentConfig(_Section):
    k: int | None = Field(None, ge=1, description="Force this number of segments; chosen automatically when unset.")
    k_min: int = Field(2, ge=2, description="Smallest k tried.")
    k_max: int = Field(10, ge=2, description="Largest k tried.")
    features: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SEGMENT_FEATURES),
        description="Features the segmentation uses ('all' = every numeric feature).",
    )
    seed: int = Field(0, description="Seed of every random step in segmentation.")
    n_init: int = Field(10, ge=1, description="K-Means restarts per k.")
    silhouette_sample: int = Field(
        5_000, ge=100, description="Silhouette is computed on a seeded sample this big (memory: 8 x n² bytes)."
    )
    selection_sample: int = Field(
        20_000, ge=1000, description="k is chosen on a seeded sample this big; the final fit uses everyone."
    )


class RecommendConfig(_Section):
    n: int = Field(10, ge=1, le=1000, description="Recommendations per customer.")
    holdout_days: int = Field(30, ge=1, description="Days at the end held out to evaluate recommendations.")
    segment_top_n: int = Field(20, ge=1, description="Top products kept per segment.")
    rebuy_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="An item counts as often re-bought when this share of its buyers bought it in 2+ orders; "
        "default: the median over items bought by 5+ customers.",
    )
    evaluate: bool = Field(True, description="Evaluate recommenders on a time split.")
    eval_users: int = Field(
        20_000,
        ge=100,
        description="At most this many customers (a seeded sample of those with purchases on both sides of the "
        "cut-off) are scored in the evaluation; the report says when it is a sample.",
    )


class EngineConfig(_Section):
    memory_limit: str | None = Field(
        "4GB",
        description="Memory DuckDB may use before it spills to the run folder (e.g. '2GB'); unset = DuckDB's "
        "default (80% of RAM).",
    )
    threads: int | None = Field(None, ge=1, description="Threads DuckDB may use; unset = all cores.")

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\s*\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", v, re.I):
            raise ValueError("expected a size such as '4GB' or '512MB'")
        return v


class RunConfig(_Section):
    engine: EngineConfig = Field(default_factory=EngineConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)


def _format_validation(err: ValidationError, origin: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        parts.append(f"{loc}: {e['msg']} (got {e.get('input')!r})")
    return f"invalid configuration in {origin}: " + "; ".join(parts)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a TOML file (optional) and apply dotted overrides such as ``{"segment.k": 4}``."""
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        p = Path(path)
        origin = str(p)
        if not p.is_file():
            raise ConfigError(f"config file '{p}' not found; pass an existing TOML file with --config")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file '{p}' is not valid TOML: {exc}") from None
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *heads, last = dotted.split(".")
        for h in heads:
            node = node.setdefault(h, {})
        node[last] = value
        origin = f"{origin} + command-line options" if "command-line" not in origin else origin
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, origin)) from None
    if cfg.segment.k_min > cfg.segment.k_max:
        raise ConfigError(f"segment.k_min ({cfg.segment.k_min}) is above segment.k_max ({cfg.segment.k_max})")
    return cfg
