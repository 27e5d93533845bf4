"""Done-when test of issue 4: on five generated shops with 3 to 7 planted segments, K-Means, Ward and the Gaussian
mixture choose the planted k on at least four shops and recover the segments (adjusted Rand >= 0.9).

The shops go through the real ingest -> clean -> features path (DuckDB); the segmenters then see the default
segmentation features, exactly as a run does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from shopseg.backends import DuckDBBackend
from shopseg.clean import clean_transactions
from shopseg.config import DEFAULT_SEGMENT_FEATURES, CleanConfig, InputConfig
from shopseg.datasets import DEFAULT_SEGMENTS, PlantedSegment, generate_shop
from shopseg.features import build_features
from shopseg.ingest import ingest_transactions
from shopseg.segment import make_segmenter

#: The foundation's four planted segments plus three more, each apart from the others in recency, frequency,
#: order value or tenure; a shop with k segments plants the first k.
SEGMENT_LIBRARY: tuple[PlantedSegment, ...] = (
    DEFAULT_SEGMENTS[0],  # champions
    DEFAULT_SEGMENTS[1],  # regulars
    DEFAULT_SEGMENTS[2],  # lapsed
    DEFAULT_SEGMENTS[3],  # one-off bargain
    PlantedSegment("new big spenders", 0.15, 0.0, 3000.0, (0.0, 30.0), (0.0, 30.0), 30.0, 1),
    PlantedSegment("old one-off", 0.15, 0.0, 60.0, (250.0, 370.0), (250.0, 370.0), 6.0, 1),
    PlantedSegment("occasional", 0.15, 0.0, 120.0, (90.0, 160.0), (300.0, 373.0), 8.0, 2),
)
PLANTED_KS = (3, 4, 5, 6, 7)


def _shop_features(k: int, folder: Path) -> pd.DataFrame:
    shop = generate_shop(1500, seed=100 + k, segments=SEGMENT_LIBRARY[:k])
    path = folder / f"shop{k}.parquet"
    shop.transactions.to_parquet(path)
    backend = DuckDBBackend(folder / f"shop{k}.duckdb")
    try:
        ing = ingest_transactions(backend, [str(path)], InputConfig(), work=folder / f"work{k}")
        clean_transactions(backend, ing, CleanConfig())
        fs = build_features(backend, None, present_columns=set(ing.mapping.source))
    finally:
        backend.close()
    truth = shop.truth.assign(customer_id=shop.truth["customer_id"].astype(str))
    frame = fs.frame.merge(truth, on="customer_id", validate="one_to_one")
    assert len(frame) == 1500 and frame["segment"].nunique() == k
    return frame


@pytest.fixture(scope="module")
def shops(tmp_path_factory: pytest.TempPathFactory) -> dict[int, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("planted_shops")
    return {k: _shop_features(k, folder) for k in PLANTED_KS}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["kmeans", "ward", "gmm"])
def test_planted_k_chosen_and_segments_recovered(algorithm: str, shops: dict[int, pd.DataFrame]) -> None:
    chosen, aris = {}, {}
    for k, frame in shops.items():
        # stability is tested elsewhere; here only k selection (with the gap statistic) and the fit matter
        seg = make_segmenter(algorithm, list(DEFAULT_SEGMENT_FEATURES), seed=0, stability_resamples=0).fit(frame)
        chosen[k] = seg.k_
        aris[k] = adjusted_rand_score(frame["segment"], seg.labels_)
    right = [k for k in PLANTED_KS if chosen[k] == k]
    assert len(right) >= 4, f"{algorithm} chose {chosen} for planted k {PLANTED_KS}"
    assert all(aris[k] >= 0.9 for k in right), f"{algorithm}: adjusted Rand {aris}"
    assert np.mean(list(aris.values())) >= 0.9
