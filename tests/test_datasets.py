"""Tests of the synthetic shop generators in shopseg.datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from shopseg.datasets import (
    ARROW_SCHEMA,
    COLUMNS,
    DEFAULT_SEGMENTS,
    GeneratedShop,
    generate_lines,
    generate_shop,
    write_parquet,
)

REAL_PARQUET = Path("/work/shared/data/online_retail/online_retail.parquet")
END = "2011-12-09"


@pytest.fixture(scope="module")
def shop() -> GeneratedShop:
    return generate_shop(2000, seed=0)


@pytest.fixture(scope="module")
def quirky_shop() -> GeneratedShop:
    return generate_shop(2000, seed=0, quirks=True)


def customer_features(transactions: pd.DataFrame, end: str = END) -> pd.DataFrame:
    """Recency/frequency/AOV/tenure per customer, measured from ``end`` + 1 day."""
    snapshot = pd.Timestamp(end) + pd.Timedelta(days=1)
    tx = transactions.assign(value=transactions["Quantity"] * transactions["UnitPrice"])
    grouped = tx.groupby("CustomerID")
    frequency = grouped["InvoiceNo"].nunique()
    return pd.DataFrame(
        {
            "recency": (snapshot - grouped["InvoiceDate"].max()).dt.days,
            "frequency": frequency,
            "aov": grouped["value"].sum() / frequency,
            "tenure": (snapshot - grouped["InvoiceDate"].min()).dt.days,
        }
    )


def kmeans_ari(shop: GeneratedShop) -> float:
    feats = customer_features(shop.transactions)
    truth = shop.truth.set_index("customer_id")["segment"].reindex(feats.index)
    assert truth.notna().all()
    x = np.column_stack(
        [
            np.log1p(feats["recency"].to_numpy(dtype=float)),
            np.log1p(feats["frequency"].to_numpy(dtype=float)),
            np.log1p(feats["aov"].to_numpy(dtype=float)),
            feats["tenure"].to_numpy(dtype=float),
        ]
    )
    labels = KMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(StandardScaler().fit_transform(x))
    return float(adjusted_rand_score(truth.to_numpy(), labels))


# ---------------------------------------------------------------------------------------------------------
# generate_shop
# ---------------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_output(shop: GeneratedShop) -> None:
    again = generate_shop(2000, seed=0)
    pd.testing.assert_frame_equal(shop.transactions, again.transactions)
    pd.testing.assert_frame_equal(shop.truth, again.truth)


def test_same_seed_with_quirks_is_identical(quirky_shop: GeneratedShop) -> None:
    again = generate_shop(2000, seed=0, quirks=True)
    pd.testing.assert_frame_equal(quirky_shop.transactions, again.transactions)


def test_different_seed_gives_different_output(shop: GeneratedShop) -> None:
    other = generate_shop(2000, seed=1)
    assert not shop.transactions.equals(other.transactions)
    assert not shop.truth["segment"].equals(other.truth["segment"])


def test_layout_and_dtypes(shop: GeneratedShop) -> None:
    tx = shop.transactions
    assert tuple(tx.columns) == COLUMNS
    assert tx["InvoiceNo"].dtype == "str"
    assert tx["StockCode"].dtype == "str"
    assert tx["Description"].dtype == "str"
    assert tx["Country"].dtype == "str"
    assert tx["Quantity"].dtype == np.int64
    assert tx["UnitPrice"].dtype == np.float64
    assert tx["InvoiceDate"].dtype == "datetime64[us]"
    assert tx["CustomerID"].dtype == "Int64"
    assert tx["InvoiceNo"].str.fullmatch(r"\d+").all()
    assert tx["CustomerID"].notna().all()
    assert (tx["Quantity"] > 0).all() and (tx["UnitPrice"] > 0).all()
    assert tx["InvoiceDate"].is_monotonic_increasing
    assert tx["InvoiceDate"].min() >= pd.Timestamp("2010-12-01")
    assert tx["InvoiceDate"].max() < pd.Timestamp(END) + pd.Timedelta(days=1)
    assert (tx["Country"] == "United Kingdom").mean() > 0.8
    assert isinstance(tx.index, pd.RangeIndex)
    # the real shop never sold on Saturdays
    assert not (tx["InvoiceDate"].dt.day_of_week == 5).any()


def test_truth_matches_transactions(shop: GeneratedShop) -> None:
    truth = shop.truth
    assert list(truth.columns) == ["customer_id", "segment"]
    assert truth["customer_id"].dtype == np.int64
    assert truth["segment"].dtype == "str"
    assert truth["customer_id"].is_unique and truth["customer_id"].is_monotonic_increasing
    assert len(truth) == 2000
    assert set(truth["customer_id"]) == set(shop.transactions["CustomerID"].astype("int64"))


def test_segment_shares(shop: GeneratedShop) -> None:
    shares = shop.truth["segment"].value_counts(normalize=True)
    for seg in DEFAULT_SEGMENTS:
        assert shares[seg.name] == pytest.approx(seg.share, abs=0.01)


def test_lines_per_invoice_like_online_retail(shop: GeneratedShop) -> None:
    per_invoice = shop.transactions.groupby("InvoiceNo").size()
    assert 10 <= per_invoice.mean() <= 20
    # one line per product within an invoice
    assert not shop.transactions.duplicated(["InvoiceNo", "StockCode"]).any()


def test_planted_features_per_segment(shop: GeneratedShop) -> None:
    feats = customer_features(shop.transactions)
    seg = shop.truth.set_index("customer_id")["segment"].reindex(feats.index)
    med = feats.groupby(seg.to_numpy()).median()
    assert med.loc["champions", "recency"] <= 14
    assert med.loc["champions", "frequency"] >= 15
    assert 200 <= med.loc["lapsed", "recency"] <= 330
    assert (feats.loc[seg.to_numpy() == "one-off bargain", "frequency"] == 1).all()
    assert med["aov"].idxmax() == "champions"
    assert med["aov"].idxmin() == "one-off bargain"


def test_kmeans_recovers_planted_segments(shop: GeneratedShop) -> None:
    assert kmeans_ari(shop) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kmeans_recovers_planted_segments_other_seeds(seed: int) -> None:
    assert kmeans_ari(generate_shop(2000, seed=seed)) >= 0.9


def test_segments_prefer_different_products(shop: GeneratedShop) -> None:
    tx = shop.transactions.merge(
        shop.truth.rename(columns={"customer_id": "CustomerID"}).astype({"CustomerID": "Int64"}),
        on="CustomerID",
    )
    top = {name: set(group["StockCode"].value_counts().index[:10]) for name, group in tx.groupby("segment")}
    names = sorted(top)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert len(top[a] & top[b]) <= 5, (a, b)


def test_customers_rebuy_their_products(shop: GeneratedShop) -> None:
    tx = shop.transactions
    repeat_customers = tx.groupby("CustomerID")["InvoiceNo"].nunique()
    tx = tx[tx["CustomerID"].isin(repeat_customers[repeat_customers > 1].index)]
    first_invoice = tx.groupby(["CustomerID", "StockCode"])["InvoiceDate"].transform("min")
    rebuy_share = (tx["InvoiceDate"] > first_invoice).mean()
    assert rebuy_share > 0.5


def test_quirks_present(quirky_shop: GeneratedShop) -> None:
    tx = quirky_shop.transactions
    cancels = tx[tx["InvoiceNo"].str.startswith("C")]
    assert len(cancels) > 0
    assert (cancels["Quantity"] < 0).all()
    assert tx["CustomerID"].isna().sum() > 0
    assert (tx["UnitPrice"] == 0).sum() > 0
    assert tx.duplicated().sum() > 0
    assert {"POST", "DOT", "M"} <= set(tx["StockCode"])
    assert tx["Description"].isna().sum() > 0
    assert tx["InvoiceNo"].str.fullmatch(r"C?\d+").all()
    # every cancelled line matches an earlier purchase of the same customer
    purchases = tx[~tx["InvoiceNo"].str.startswith("C")]
    matched = cancels.merge(
        purchases[["CustomerID", "StockCode", "InvoiceDate", "Quantity"]],
        on=["CustomerID", "StockCode"],
        suffixes=("", "_bought"),
    )
    matched = matched[
        (matched["InvoiceDate_bought"] <= matched["InvoiceDate"]) & (matched["Quantity_bought"] == -matched["Quantity"])
    ]
    assert (
        matched[["InvoiceNo", "StockCode"]].drop_duplicates().shape[0]
        == (cancels[["InvoiceNo", "StockCode"]].drop_duplicates().shape[0])
    )
    # rates stay small
    assert len(cancels) / len(tx) < 0.05
    assert tx["CustomerID"].isna().mean() < 0.15


def test_no_quirks_by_default(shop: GeneratedShop) -> None:
    tx = shop.transactions
    assert not tx["InvoiceNo"].str.startswith("C").any()
    assert not tx.duplicated().any()
    assert not tx["StockCode"].isin(["POST", "DOT", "M"]).any()


def test_quirky_shop_after_cleaning_still_recovers_segments(quirky_shop: GeneratedShop) -> None:
    tx = quirky_shop.transactions.drop_duplicates()
    tx = tx[
        tx["CustomerID"].notna()
        & ~tx["InvoiceNo"].str.startswith("C")
        & (tx["Quantity"] > 0)
        & (tx["UnitPrice"] > 0)
        & ~tx["StockCode"].isin(["POST", "DOT", "M"])
    ]
    cleaned = GeneratedShop(transactions=tx.reset_index(drop=True), truth=quirky_shop.truth)
    assert kmeans_ari(cleaned) >= 0.9


def test_generate_shop_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate_shop(0)
    with pytest.raises(ValueError):
        generate_shop(10, segments=())


# ---------------------------------------------------------------------------------------------------------
# generate_lines / write_parquet
# ---------------------------------------------------------------------------------------------------------


def test_generate_lines_row_count_and_chunks() -> None:
    tables = list(generate_lines(250_001, seed=3, chunk_rows=100_000))
    assert [t.num_rows for t in tables] == [100_000, 100_000, 50_001]
    assert sum(t.num_rows for t in tables) == 250_001
    assert list(generate_lines(0)) == []


def test_generate_lines_schema_matches_real_parquet() -> None:
    table = next(generate_lines(1000, seed=0))
    assert table.schema.names == list(COLUMNS)
    assert table.schema.remove_metadata().equals(ARROW_SCHEMA)
    if REAL_PARQUET.exists():
        real = pq.read_schema(REAL_PARQUET)
        assert table.schema.names == real.names
        assert table.schema.remove_metadata().equals(real.remove_metadata())


def test_generate_lines_deterministic() -> None:
    a = list(generate_lines(120_000, seed=5, chunk_rows=50_000))
    b = list(generate_lines(120_000, seed=5, chunk_rows=50_000))
    c = list(generate_lines(120_000, seed=6, chunk_rows=50_000))
    assert all(x.equals(y) for x, y in zip(a, b, strict=True))
    assert not all(x.equals(y) for x, y in zip(a, c, strict=True))


def test_generate_lines_looks_like_online_retail() -> None:
    tables = list(generate_lines(1_000_000, seed=0, chunk_rows=400_000))
    df = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    assert df["CustomerID"].dtype == "Int64"
    assert 0.15 <= df["CustomerID"].isna().mean() <= 0.25
    cancel = df["InvoiceNo"].str.startswith("C")
    assert 0.005 <= cancel.mean() <= 0.02
    assert (df.loc[cancel, "Quantity"] < 0).all()
    assert (df.loc[~cancel, "Quantity"] > 0).all()
    assert df["InvoiceNo"].str.fullmatch(r"C?\d+").all()
    assert 0.005 <= df.duplicated().mean() <= 0.03
    assert df["StockCode"].isin(["POST", "DOT", "M"]).any()
    assert (df["UnitPrice"] == 0).any()
    assert 3000 <= df["StockCode"].nunique() <= 4100
    counts = df["StockCode"].value_counts()
    assert counts.iloc[0] > 20 * counts.iloc[2999]  # skewed popularity
    per_customer = df.groupby("CustomerID").size()
    assert 70 <= per_customer.mean() <= 160
    assert per_customer.max() > 10 * per_customer.median()  # heavy tail
    assert df["InvoiceDate"].is_monotonic_increasing
    assert df["InvoiceDate"].min() >= pd.Timestamp("2010-12-01")
    assert df["InvoiceDate"].max() < pd.Timestamp("2011-12-10")
    assert 15 <= df.groupby("InvoiceNo").size().mean() <= 30
    assert (df["Country"] == "United Kingdom").mean() > 0.8


def test_write_parquet_roundtrip(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "sub" / "lines.parquet", 150_000, seed=2)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 150_000
    assert meta.row_group(0).column(0).compression == "ZSTD"
    df = pd.read_parquet(path)
    assert tuple(df.columns) == COLUMNS
    assert df["CustomerID"].dtype == "Int64"
    assert df["InvoiceNo"].dtype == "str"
    expected = pd.concat([t.to_pandas() for t in generate_lines(150_000, seed=2)], ignore_index=True)
    pd.testing.assert_frame_equal(df, expected)
