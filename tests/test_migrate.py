"""Segment migration: the exact matrix on hand-made assignments and on two hand-built periods scored with a
saved model, the files and Sankey page, and the CLI with its errors (exit code 2, no traceback)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from shopseg.cli import main
from shopseg.config import load_config
from shopseg.datasets import generate_shop
from shopseg.errors import DataError, NotFittedError
from shopseg.pipeline import run
from shopseg.profile.migrate import LOST, NEW, migrate, migration_table


def test_matrix_of_hand_made_assignments() -> None:
    old = pd.DataFrame({"customer_id": ["a", "b", "c", "d", "e", "f"], "segment": [0, 0, 1, 1, 1, 2]})
    new = pd.DataFrame({"customer_id": ["a", "b", "c", "d", "g", "h"], "segment": [0, 1, 1, 0, 0, 1]})
    m = migration_table(old, new, {0: "Loyal", 1: "At risk", 2: "New", 3: "Empty"})
    rows = ["0: Loyal", "1: At risk", "2: New", "3: Empty", NEW]
    cols = ["0: Loyal", "1: At risk", "2: New", "3: Empty", LOST]
    expected = pd.DataFrame(
        [
            [1, 1, 0, 0, 0],  # a stayed, b moved to At risk
            [1, 1, 0, 0, 1],  # d to Loyal, c stayed, e lost
            [0, 0, 0, 0, 1],  # f lost
            [0, 0, 0, 0, 0],  # an empty segment is still listed
            [1, 1, 0, 0, 0],  # g and h are new
        ],
        index=pd.Index(rows, name="from"),
        columns=pd.Index(cols, name="to"),
    )
    pd.testing.assert_frame_equal(m.counts, expected)
    assert m.shares.loc["1: At risk"].tolist() == pytest.approx([1 / 3, 1 / 3, 0, 0, 1 / 3])
    assert m.shares.loc["3: Empty"].sum() == 0 and m.shares.loc[NEW, "0: Loyal"] == 0.5
    status = m.customers.set_index("customer_id")["status"].to_dict()
    assert status == {"a": "stayed", "b": "moved", "c": "stayed", "d": "moved", "e": "lost", "f": "lost"} | {
        "g": "new",
        "h": "new",
    }
    assert m.summary() == {"old_customers": 6, "new_customers_total": 6, "stayed": 2, "moved": 2, "lost": 2, "new": 2}
    f = m.flows.set_index(["from_name", "to_name"])
    assert f.at[("At risk", LOST), "customers"] == 1 and f.at[("At risk", LOST), "share_of_all"] == pytest.approx(1 / 8)
    assert len(m.flows) == 5 * 5 - 1 and m.flows["customers"].sum() == 8
    assert pd.isna(f.at[(NEW, "Loyal"), "from_segment"]) and pd.isna(f.at[("Loyal", LOST), "to_segment"])
    with pytest.raises(DataError, match="twice"):
        migration_table(pd.concat([old, old.head(1)]), new)
    with pytest.raises(DataError, match="segment"):
        migration_table(old[["customer_id"]], new)


# ------------------------------------------------------------------------ two periods, one saved model
HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
# (first order days before the period's end, gap between orders in days, orders, order value), close to
# the planted segments of generate_shop's default shop
PROTOTYPES = {
    "premium": (360, 25, 15, 650.0),
    "regular": (250, 44, 6, 280.0),
    "lapsed": (350, 30, 4, 400.0),
    "one-off": (50, 0, 1, 15.0),
}
NAMES = {"premium": "Premium customers", "regular": "Loyal regulars", "lapsed": "At risk", "one-off": "New customers"}
OLD_END, NEW_END = datetime(2011, 6, 1), datetime(2011, 12, 1)


def _period(path: Path, end: datetime, customers: dict[int, str]) -> Path:
    lines, invoice = [], 600_000 if end == NEW_END else 500_000
    for cid, kind in customers.items():
        first, gap, n, value = PROTOTYPES[kind]
        for i in range(n):
            ts = end - timedelta(days=first - i * gap) + timedelta(hours=10)
            lines.append(f"{invoice},85123A,WHITE HEART,10,{ts:%Y-%m-%d %H:%M},{value / 10:.2f},{cid},United Kingdom\n")
            invoice += 1
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return path


OLD = {1: "premium", 2: "premium", 3: "regular", 4: "regular", 5: "regular", 6: "one-off", 7: "one-off", 8: "lapsed"}
NEW_ = {1: "premium", 2: "lapsed", 3: "regular", 4: "premium", 6: "regular", 8: "lapsed"}
NEW_ |= {9: "one-off", 10: "one-off", 11: "premium"}


@pytest.fixture(scope="module")
def model_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("migrate_model")
    generate_shop(1500, seed=5).transactions.to_parquet(d / "shop.parquet")
    run([d / "shop.parquet"], d / "run", load_config(None, {"recommend.evaluate": False, "segment.k": 4}))
    return d / "run"


@pytest.fixture(scope="module")
def periods(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("periods")
    return _period(d / "old.csv", OLD_END, OLD), _period(d / "new.csv", NEW_END, NEW_)


@pytest.mark.slow
def test_migration_between_two_hand_built_periods(model_run: Path, periods: tuple[Path, Path], tmp_path: Path) -> None:
    m = migrate(model_run, [periods[0]], [periods[1]], tmp_path / "mig", old_as_of=OLD_END, new_as_of=NEW_END)
    assert m.old_as_of == OLD_END and m.new_as_of == NEW_END
    cust = m.customers.set_index("customer_id")
    # every prototype lands in the segment named after its planted kind
    for period, col in ((OLD, "old_name"), (NEW_, "new_name")):
        for cid, kind in period.items():
            assert cust.at[str(cid), col] == NAMES[kind], (cid, kind)
    by_name = m.counts.rename(index=lambda s: s.split(": ", 1)[-1], columns=lambda s: s.split(": ", 1)[-1])
    p, r, a, n, lost = "Premium customers", "Loyal regulars", "At risk", "New customers", LOST
    expected = {
        (p, p): 1,  # 1 stayed
        (p, a): 1,  # 2 lapsed
        (r, r): 1,  # 3 stayed
        (r, p): 1,  # 4 moved up
        (r, lost): 1,  # 5 gone
        (n, r): 1,  # 6 became a regular
        (n, lost): 1,  # 7 gone
        (a, a): 1,  # 8 still lapsed
        (NEW, n): 2,  # 9, 10
        (NEW, p): 1,  # 11
    }
    for (f, t), v in by_name.stack().items():
        assert v == expected.get((f, t), 0), (f, t)
    assert m.summary() == {"old_customers": 8, "new_customers_total": 9, "stayed": 3, "moved": 3, "lost": 2, "new": 3}
    out = tmp_path / "mig"
    for name in (
        "migration.csv",
        "migration.parquet",
        "migration_matrix.csv",
        "migration_shares.csv",
        "migration_customers.parquet",
        "migration.html",
        "old.duckdb",
        "new.duckdb",
    ):
        assert (out / name).is_file(), name
    flows = pd.read_csv(out / "migration.csv")
    assert flows["customers"].sum() == 11 and set(flows.columns) >= {"from_name", "to_name", "share_of_from"}
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "migration.parquet"), m.flows, check_dtype=False, check_index_type=False
    )
    matrix = pd.read_csv(out / "migration_matrix.csv", index_col="from")
    assert matrix.to_numpy().sum() == 11 and list(matrix.columns)[-1] == LOST
    html = (out / "migration.html").read_text(encoding="utf-8")
    assert "<script src=" not in html and '"type":"sankey"' in html.replace(" ", "")
    assert "OLD as of 2011-06-01, NEW as of 2011-12-01" in html


@pytest.mark.slow
def test_cli_migrate_and_its_errors(
    model_run: Path, periods: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def cli(*args: str) -> tuple[int, str]:
        code = main(list(args))
        cap = capsys.readouterr()
        return code, cap.out + cap.err

    old, new = (str(p) for p in periods)
    out = tmp_path / "m"
    code, text = cli("migrate", str(model_run), old, new, "--out", str(out), "--as-of-old", "2011-06-01")
    assert code == 0, text
    assert "stayed" in text and "migration.html" in text and (out / "migration_matrix.csv").is_file()
    code, text = cli("migrate", str(tmp_path / "no-model"), old, new, "--out", str(out))
    assert code == 2 and "segmenter.json" in text and "Traceback" not in text
    code, text = cli("migrate", str(model_run), str(tmp_path / "missing.csv"), new, "--out", str(out))
    assert code == 2 and "missing.csv" in text and "Traceback" not in text


@pytest.mark.slow
def test_model_refuses_periods_without_its_features(
    tmp_path: Path, periods: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # a model that segments on distinct products cannot score order lines without a product column
    generate_shop(400, seed=1).transactions.to_parquet(tmp_path / "shop.parquet")
    feats = ["recency_days", "frequency", "distinct_products"]
    cfg = load_config(None, {"segment.features": feats, "segment.k": 3, "recommend.evaluate": False})
    run([tmp_path / "shop.parquet"], tmp_path / "run", cfg)
    no_products = tmp_path / "old.csv"
    frame = pd.read_csv(periods[0]).drop(columns=["StockCode", "Description"])
    frame.to_csv(no_products, index=False)
    with pytest.raises(NotFittedError, match="distinct_products"):
        migrate(tmp_path / "run", [no_products], [periods[1]], tmp_path / "mig")
    code = main(["migrate", str(tmp_path / "run"), str(no_products), str(periods[1]), "--out", str(tmp_path / "m")])
    text = capsys.readouterr().err
    assert code == 2 and "distinct_products" in text and "Traceback" not in text
