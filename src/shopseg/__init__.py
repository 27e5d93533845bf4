"""shopseg: from a raw shop export to named customer segments, recommendations, a report and a CRM file.

The Python API mirrors the CLI::

    import shopseg
    result = shopseg.run(["orders.csv"], "out/my-shop")          # shopseg run orders.csv --out out/my-shop
    result.segments, result.profiles, result.report
    shopseg.score("out/my-shop/model", ["new_orders.csv"], "out/scored")   # shopseg score …
    shopseg.run([shopseg.sample_path()], "out/demo")              # shopseg demo
"""

from __future__ import annotations

from shopseg.config import RunConfig, load_config
from shopseg.errors import (
    BackendError,
    ConfigError,
    DataError,
    InputError,
    IntegrityError,
    NotFittedError,
    SchemaError,
    ShopsegError,
)
from shopseg.pipeline import STEPS, RunResult, run, score

__all__ = [
    "STEPS",
    "BackendError",
    "ConfigError",
    "DataError",
    "InputError",
    "IntegrityError",
    "NotFittedError",
    "RunConfig",
    "RunResult",
    "SchemaError",
    "ShopsegError",
    "generate_shop",
    "load_config",
    "run",
    "sample_path",
    "score",
]


def __getattr__(name: str) -> object:
    # the generator pulls in numpy/pyarrow paths only when asked for
    if name in ("generate_shop", "sample_path"):
        from shopseg import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module 'shopseg' has no attribute {name!r}")
