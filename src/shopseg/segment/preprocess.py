"""Preprocessing recorded in the model: median fill, log1p for skewed non-negative features, standard scaling."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shopseg.errors import NotFittedError, SchemaError

#: A feature is log-transformed when it is non-negative and its sample skewness exceeds this.
SKEW_THRESHOLD = 1.0


@dataclass
class Preprocessor:
    """Learns per-feature fill values, log flags, centres and scales; ``transform`` applies them."""

    features: list[str]
    fill_: list[float] = field(default_factory=list)
    log_: list[bool] = field(default_factory=list)
    center_: list[float] = field(default_factory=list)
    scale_: list[float] = field(default_factory=list)
    dropped_: dict[str, str] = field(default_factory=dict)

    def fit(self, frame: pd.DataFrame) -> Preprocessor:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise SchemaError(f"features {missing} not in the feature table; available: {list(frame.columns)}")
        kept: list[str] = []
        self.fill_, self.log_, self.center_, self.scale_, self.dropped_ = [], [], [], [], {}
        for f in self.features:
            x = frame[f].to_numpy(dtype="float64")
            finite = x[np.isfinite(x)]
            if finite.size == 0:
                self.dropped_[f] = "no values"
                continue
            fill = float(np.median(finite))
            x = np.where(np.isfinite(x), x, fill)
            skew = _skew(x)
            use_log = bool(x.min() >= 0 and skew > SKEW_THRESHOLD)
            xt = np.log1p(x) if use_log else x
            sd = float(xt.std())
            if sd == 0.0:
                self.dropped_[f] = "constant"
                continue
            kept.append(f)
            self.fill_.append(fill)
            self.log_.append(use_log)
            self.center_.append(float(xt.mean()))
            self.scale_.append(sd)
        if not kept:
            raise SchemaError(
                f"every segmentation feature was dropped ({self.dropped_}); choose other features in [segment] features"
            )
        self.features = kept
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        if not self.center_:
            raise NotFittedError("the preprocessor is not fitted; call fit first")
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise NotFittedError(
                f"the model uses features {missing} that this data lacks; score data with the same columns "
                "(e.g. product ids) as the data the model was fitted on"
            )
        x = frame[self.features].to_numpy(dtype="float64").copy()
        fill = np.asarray(self.fill_)
        x = np.where(np.isfinite(x), x, fill)
        logm = np.asarray(self.log_)
        x[:, logm] = np.log1p(np.clip(x[:, logm], 0, None))
        out: np.ndarray = (x - np.asarray(self.center_)) / np.asarray(self.scale_)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "fill": self.fill_,
            "log1p": self.log_,
            "center": self.center_,
            "scale": self.scale_,
            "dropped": self.dropped_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessor:
        p = cls(list(d["features"]))
        p.fill_, p.log_ = [float(v) for v in d["fill"]], [bool(v) for v in d["log1p"]]
        p.center_, p.scale_ = [float(v) for v in d["center"]], [float(v) for v in d["scale"]]
        p.dropped_ = dict(d.get("dropped", {}))
        return p


def _skew(x: np.ndarray) -> float:
    sd = x.std()
    if sd == 0:
        return 0.0
    return float(np.mean(((x - x.mean()) / sd) ** 3))
