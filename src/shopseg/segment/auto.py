"""``auto``: fit several algorithms on the same features and keep one, with the reason in words.

Rule: every candidate (default K-Means, Ward, Gaussian mixture, HDBSCAN) is fitted with its own k selection and
bootstrap stability. A candidate is *eligible* when its segmentation is reproducible (mean adjusted Rand
between bootstrap refits at its k of at least ``stability_threshold``) and, for HDBSCAN, when at most
``max_noise`` of the customers are left unassigned. Among the eligible, the highest silhouette wins — computed
for every candidate on the same seeded sample of the same preprocessed features (noise left out); near-ties
(within 0.005) go to the earlier candidate in the list, i.e. the simpler model. When no candidate is
eligible, the highest silhouette wins and the reason says so. RFM is not a candidate: it does not use the
segmentation features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_score

from shopseg.errors import ConfigError, DataError, ShopsegError
from shopseg.segment.base import Segmenter, _check_params, make_segmenter, register, seeded_sample

DEFAULT_CANDIDATES: tuple[str, ...] = ("kmeans", "ward", "gmm", "hdbscan")
TIE = 0.005


@register
class AutoSegmenter(Segmenter):
    """Fits ``candidates`` and delegates to the one chosen (``chosen_``); ``comparison_`` and ``reason_`` say why.

    Saving writes the chosen model (loading gives that algorithm's segmenter) with the comparison under "auto".
    """

    algorithm = "auto"
    label = "auto (best of several algorithms)"

    def __init__(
        self,
        features: list[str],
        *,
        candidates: list[str] | None = None,
        max_noise: float = 0.2,
        n_init: int = 10,
        minibatch_threshold: int = 5_000_000,
        exact_limit: int = 20_000,
        covariance_type: str = "full",
        min_cluster_size: int | None = None,
        min_samples: int | None = None,
        fit_sample: int = 20_000,
        gmm_n_init: int = 3,
        **common: Any,
    ) -> None:
        super().__init__(features, **common)
        self.candidates = candidates
        self.max_noise = max_noise
        self.n_init = n_init
        self.minibatch_threshold = minibatch_threshold
        self.exact_limit = exact_limit
        self.covariance_type = covariance_type
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.fit_sample = fit_sample
        self.gmm_n_init = gmm_n_init

    chosen_: Segmenter
    comparison_: pd.DataFrame
    reason_: str

    @property
    def algorithm_(self) -> str:
        return self.chosen_.algorithm_ if hasattr(self, "chosen_") else self.algorithm

    def _names(self) -> list[str]:
        names = list(self.candidates or DEFAULT_CANDIDATES)
        bad = [n for n in names if n in ("auto", "rfm")]
        if bad or not names:
            raise ConfigError(
                f"auto candidates must be clustering algorithms (kmeans, minibatch, ward, gmm, hdbscan), got {names}"
            )
        return names

    def _fit(self, frame: pd.DataFrame) -> None:
        common = {k: v for k, v in self.get_params().items() if k not in ("features", "candidates", "max_noise")}
        fitted: dict[str, Segmenter] = {}
        failed: dict[str, str] = {}
        for name in self._names():
            seg = make_segmenter(name, list(self.features), **_accepted(name, common))
            _check_params(seg.get_params(), name)
            try:
                seg._fit(frame)  # already inside fit()'s thread limits
            except ShopsegError as exc:
                failed[name] = str(exc)
                continue
            fitted[name] = seg
        if not fitted:
            raise DataError(f"auto: no candidate algorithm could segment this data: {failed}")
        first = next(iter(fitted.values()))
        x = first.preprocessor_.transform(frame)
        idx = seeded_sample(len(x), self.silhouette_sample, self.seed + 5)
        rows = []
        for name, seg in fitted.items():
            lab = seg.labels_[idx]
            keep = lab >= 0
            sil = (
                float(silhouette_score(x[idx][keep], lab[keep]))
                if 1 < len(np.unique(lab[keep])) < int(keep.sum())
                else float("nan")
            )
            ari = seg.stability_.ari_at(seg.k_) if seg.stability_ is not None else float("nan")
            stable = bool(ari >= self.stability_threshold) if seg.stability_ is not None else True
            noise_ok = seg.noise_share_ <= self.max_noise
            rows.append((name, seg.k_, sil, ari, seg.noise_share_, stable and noise_ok and not np.isnan(sil)))
        for name, _why in failed.items():
            rows.append((name, 0, float("nan"), float("nan"), float("nan"), False))
        table = pd.DataFrame(rows, columns=["algorithm", "k", "silhouette", "stability_ari", "noise_share", "eligible"])
        self.chosen_, self.reason_ = self._pick(table, fitted, failed)
        table["chosen"] = table["algorithm"] == self.chosen_.algorithm
        self.comparison_ = table
        self._adopt(self.chosen_)

    def _pick(self, table: pd.DataFrame, fitted: dict[str, Segmenter], failed: dict[str, str]) -> tuple[Segmenter, str]:
        pool = table[table["eligible"]]
        rule = (
            f"the best silhouette among the candidates that are stable under bootstrap (mean adjusted Rand >= "
            f"{self.stability_threshold:.2f}) and leave at most {self.max_noise:.0%} unassigned"
        )
        if pool.empty:
            pool = table[table["silhouette"].notna()]
            rule = "the best silhouette; no candidate met the stability and noise conditions"
        if pool.empty:
            pool = table[table["algorithm"].isin(list(fitted))].head(1)
            rule = "the first candidate that could be fitted; no silhouette could be computed"
        best_sil = pool["silhouette"].max()
        top = pool[pool["silhouette"] >= best_sil - TIE] if pd.notna(best_sil) else pool
        name = str(top.iloc[0]["algorithm"])

        def one(r: Any) -> str:
            if r.algorithm in failed:
                return f"{r.algorithm} failed ({failed[r.algorithm]})"
            txt = f"{r.algorithm} k={r.k} silhouette {r.silhouette:.3f}"
            if pd.notna(r.stability_ari):
                txt += f", stability {r.stability_ari:.2f}"
            if r.noise_share > 0:
                txt += f", {r.noise_share:.0%} unassigned"
            return txt

        detail = "; ".join(one(r) for r in table.itertuples())
        return fitted[name], f"auto chose {name}: {rule}. Candidates: {detail}."

    def _adopt(self, seg: Segmenter) -> None:
        for attr in (
            "preprocessor_",
            "state_",
            "labels_",
            "k_",
            "selection_",
            "stability_",
            "fit_info_",
            "noise_share_",
            "segment_names_",
            "segment_actions_",
            "n_fit_",
            "timings_",
        ):
            setattr(self, attr, getattr(seg, attr))
        self.fit_info_ = dict(seg.fit_info_) | {"auto": self.reason_}

    # everything that uses the model goes to the chosen segmenter
    def _assign(self, x: np.ndarray) -> np.ndarray:
        return self.chosen_._assign(x)

    def customer_columns(self, frame: pd.DataFrame) -> pd.DataFrame | None:
        return self.chosen_.customer_columns(frame)

    def to_dict(self) -> dict[str, Any]:
        self._check()
        return self.chosen_.to_dict() | {"fit": self.fit_info_, "auto": self._auto_dict()}

    def _auto_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason_,
            "comparison": self.comparison_.to_dict(orient="records"),
            "params": {k: v for k, v in self.get_params().items() if k != "features"},
        }

    def save(self, directory: Any, extra: dict[str, Any] | None = None) -> None:
        self._check()
        self.chosen_.fit_info_ = self.fit_info_
        self.chosen_.save(directory, extra={"auto": self._auto_dict()} | (extra or {}))


def _accepted(name: str, params: dict[str, Any]) -> dict[str, Any]:
    from shopseg.segment.base import _REGISTRY

    params = dict(params)
    if name == "gmm":
        params["n_init"] = params.pop("gmm_n_init")  # K-Means' restarts are not EM's
    names = set(_REGISTRY[name].param_names())
    return {k: v for k, v in params.items() if k in names}
