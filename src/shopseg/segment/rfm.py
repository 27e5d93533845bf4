"""Classic RFM scoring as a transparent baseline: quintile scores 1-5 and the usual eleven named segments.

Scores. The training customers' quintile boundaries (20th, 40th, 60th and 80th percentiles, linear
interpolation) cut each of recency, frequency and monetary into five bins; a value equal to a boundary falls
in the lower bin. Frequency and monetary score 1 (lowest bin) to 5; recency scores 5 (most recent bin) to 1.
Ties are therefore handled by value, never by row order: customers with the same value always get the same
score, and when one value fills several quintiles (typically "1 order" for most customers) the bins it spans
collapse and some scores go unused. The boundaries are saved, so scoring a later period reuses them.

Segments. The widely used grid over the R and F scores (M is reported, not used), with its Hibernating cell
split so that R=1, F=1 is "Lost":

======= ========= ========= ========= ========= =========
R \\ F   1         2         3         4         5
======= ========= ========= ========= ========= =========
5       New       Pot. loy. Pot. loy. Champions Champions
4       Promising Pot. loy. Pot. loy. Loyal     Loyal
3       Ab. sleep Ab. sleep Need att. Loyal     Loyal
2       Hibern.   Hibern.   At risk   At risk   Can't lose
1       Lost      Hibern.   At risk   At risk   Can't lose
======= ========= ========= ========= ========= =========
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shopseg.errors import ConfigError
from shopseg.segment.base import Segmenter, register
from shopseg.segment.preprocess import Preprocessor

QUANTILES: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8)


@dataclass(frozen=True)
class RFMSegment:
    name: str
    cells: frozenset[tuple[int, int]]  # (R score, F score)
    action: str


def _cells(rs: range | tuple[int, ...], fs: range | tuple[int, ...]) -> frozenset[tuple[int, int]]:
    return frozenset((r, f) for r in rs for f in fs)


#: The eleven RFM segments in grid order (the order of their raw labels).
RFM_SEGMENTS: tuple[RFMSegment, ...] = (
    RFMSegment(
        "Champions",
        _cells((5,), (4, 5)),
        "Reward them: early access, loyalty perks and thanks; ask for reviews and referrals; no discounts needed.",
    ),
    RFMSegment(
        "Loyal",
        _cells((3, 4), (4, 5)),
        "Upsell higher-value ranges, invite to the loyalty programme, ask for reviews.",
    ),
    RFMSegment(
        "Potential loyalist",
        _cells((4, 5), (2, 3)),
        "Offer membership or a loyalty programme and recommend products that go with what they bought.",
    ),
    RFMSegment("New", _cells((5,), (1,)), "Onboard: welcome series and a second-purchase incentive."),
    RFMSegment(
        "Promising", _cells((4,), (1,)), "Build awareness: bestsellers, samples and a time-limited second-order offer."
    ),
    RFMSegment(
        "Need attention",
        _cells((3,), (3,)),
        "Limited-time offers and recommendations from their past purchases before they drift away.",
    ),
    RFMSegment(
        "About to sleep",
        _cells((3,), (1, 2)),
        "Reconnect: popular products and a renewal discount before they lapse.",
    ),
    RFMSegment(
        "At risk",
        _cells((1, 2), (3, 4)),
        "Win back with personal e-mails about their usual products and a reactivation offer.",
    ),
    RFMSegment(
        "Can't lose them",
        _cells((1, 2), (5,)),
        "Personal contact: find out why they stopped, show what is new, make a strong win-back offer.",
    ),
    RFMSegment(
        "Hibernating",
        _cells((1, 2), (1, 2)) - {(1, 1)},
        "Low-cost reactivation: a seasonal newsletter and one relevant offer.",
    ),
    RFMSegment("Lost", _cells((1,), (1,)), "At most a low-cost revival campaign; exclude from paid retargeting."),
)

_GRID = np.full((6, 6), -1, dtype=np.int64)  # [R, F] -> segment index
for _i, _s in enumerate(RFM_SEGMENTS):
    for _r, _f in _s.cells:
        _GRID[_r, _f] = _i
assert (_GRID[1:, 1:] >= 0).all(), "every (R, F) cell must belong to one segment"


def quintile_edges(values: np.ndarray) -> np.ndarray:
    """The four quintile boundaries of ``values`` (linear interpolation)."""
    out: np.ndarray = np.quantile(values, QUANTILES)
    return out


def scores(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """R, F, M scores (n x 3, 1..5) of raw recency/frequency/monetary rows against saved boundaries."""
    bins = np.column_stack([np.searchsorted(edges[j], x[:, j], side="left") for j in range(3)])
    out: np.ndarray = np.column_stack([5 - bins[:, 0], 1 + bins[:, 1], 1 + bins[:, 2]]).astype(np.int64)
    return out


def segment_of(score: np.ndarray) -> np.ndarray:
    """Index into :data:`RFM_SEGMENTS` for each row of R, F, M scores."""
    out: np.ndarray = _GRID[score[:, 0], score[:, 1]]
    return out


@register
class RFMSegmenter(Segmenter):
    """RFM quintile scores and the eleven named segments of the R/F grid (see the module docstring).

    ``features`` must be the recency, frequency and monetary columns (``recency``/``frequency``/``monetary``
    name them; defaults: ``recency_days``, ``frequency``, ``monetary``), or None. Preprocessing options are
    ignored: scores are taken on the raw values (missing values filled with the training median).
    """

    algorithm = "rfm"
    label = "RFM scores (R/F grid of 11 named segments)"
    chooses_k = False

    def __init__(
        self,
        features: list[str] | None = None,
        *,
        recency: str = "recency_days",
        frequency: str = "frequency",
        monetary: str = "monetary",
        **common: Any,
    ) -> None:
        roles = [recency, frequency, monetary]
        if features is not None and list(features) != roles:
            raise ConfigError(
                f"RFM scores the columns recency={recency!r}, frequency={frequency!r}, monetary={monetary!r}, but "
                f"features {list(features)} were given; pass features=None or name the columns with recency=, "
                "frequency= and monetary="
            )
        super().__init__(roles, **common)
        self.recency = recency
        self.frequency = frequency
        self.monetary = monetary

    def get_params(self) -> dict[str, Any]:
        return super().get_params() | {"features": None}

    def _make_preprocessor(self) -> Preprocessor:
        return Preprocessor(
            [self.recency, self.frequency, self.monetary],
            skew="none",
            scaling="none",
            drop_correlated=None,
            drop_constant=False,
            seed=self.seed,
        )

    def _index_space(self, x: np.ndarray) -> np.ndarray:
        z = np.log1p(np.clip(x, 0, None))
        sd = z.std(axis=0)
        out: np.ndarray = (z - z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        return out

    def _fit_final(self, x: np.ndarray, k: int | None) -> np.ndarray:
        edges = np.vstack([quintile_edges(x[:, j]) for j in range(3)])
        self.state_ = {"edges": edges}
        names = (self.recency, self.frequency, self.monetary)
        self.fit_info_.update(
            method="RFM quintile scores (boundaries in the lower bin), R/F grid of 11 named segments",
            quintile_boundaries={n: [float(v) for v in edges[j]] for j, n in enumerate(names)},
        )
        raw: np.ndarray = segment_of(scores(x, edges))
        return raw

    def _n_slots(self, raw: np.ndarray) -> int:
        return len(RFM_SEGMENTS)

    def _permute(self, order: np.ndarray, remap: np.ndarray) -> None:
        super()._permute(order, remap)
        self.state_["segment_label"] = remap.copy()
        self.segment_names_ = {int(remap[i]): s.name for i, s in enumerate(RFM_SEGMENTS)}
        self.segment_actions_ = {int(remap[i]): s.action for i, s in enumerate(RFM_SEGMENTS)}

    def _assign(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.state_["segment_label"][segment_of(scores(x, self.state_["edges"]))]
        return out

    def _resample_labels(
        self, x_fit: np.ndarray, ks: list[int], seed: int, x_eval: np.ndarray
    ) -> dict[int, np.ndarray]:
        edges = np.vstack([quintile_edges(x_fit[:, j]) for j in range(3)])
        lab = segment_of(scores(x_eval, edges))
        return {k: lab for k in ks}

    def _k_reason(self) -> str:
        return (
            f"RFM uses a fixed grid of 11 named segments over the recency and frequency quintile scores; {self.k_} "
            "of them hold customers here. k is not chosen; the indices below are for comparison with the "
            "clustering algorithms (on log1p-standardised recency, frequency and monetary)."
        )

    def customer_columns(self, frame: pd.DataFrame) -> pd.DataFrame | None:
        """``r_score``, ``f_score``, ``m_score`` (1-5) and ``rfm_score`` (e.g. "545") per customer."""
        s = scores(self.transform(frame), self.state_["edges"])
        out = pd.DataFrame(s, columns=["r_score", "f_score", "m_score"], index=frame.index)
        out["rfm_score"] = [f"{r}{f}{m}" for r, f, m in s.tolist()]
        return out
