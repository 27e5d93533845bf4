"""Write tests/data/coupons_lookalike.xlsx: a small synthetic workbook in the layout of the Egyptian coupon
workbook (``../shared/data/coupons_egypt``), which cannot be committed (its source states no licence).

Same six sheets and column names as the real file (customers, genders, cities, transactions, branches,
merchants); lookup sheets are referenced by ``*_id`` columns, and branches chain to merchants. Three behaviour
groups are planted (the ground truth is the ``group`` of each customer, returned by :func:`build` and not
written to the workbook), independent of gender and city:

* ``burner``: 8-12 coupons, 90 % burned, joined 2021-2022;
* ``collector``: 4-7 coupons, 10 % burned (mostly subscribed and never used), joined 2022-2023;
* ``dormant``: 0-2 coupons, joined 2024.

Planted quirks (the cleaning cases; the tests count them exactly):

* customers: one row without a customer id, one duplicate customer id (the second row), one city_id (99) that
  the cities sheet does not have;
* transactions: one row whose date is not a date, one row for a customer the customers sheet does not have,
  one row with status 'cancelled', one repeated transaction_id.

python scripts/make_coupon_lookalike.py        # rewrites the file (deterministic content, seed 7)
"""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "tests" / "data" / "coupons_lookalike.xlsx"

CITIES = ("Cairo", "Alexandria", "Giza", "Luxor", "Aswan", "Mansoura")
GENDERS = ("Male", "Female")
MERCHANTS = ("Nile Foods", "Delta Fashion", "Pyramid Tech", "Sphinx Home", "Red Sea Travel")
#: branch_id -> merchant_id
BRANCHES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 5}
GROUPS = {"burner": 50, "collector": 50, "dormant": 50}


def build(seed: int = 7) -> tuple[dict[str, list[list[object]]], dict[int, str]]:
    """The sheets as rows (header first) and the planted group of every customer id."""
    rng = np.random.default_rng(seed)
    customers: list[list[object]] = [["customer_id", "join_date", "city_id", "gender_id"]]
    transactions: list[list[object]] = [
        [
            "transaction_id",
            "customer_id",
            "transaction_date",
            "transaction_status",
            "coupon_name",
            "burn_date",
            "branch_id",
        ]
    ]
    truth: dict[int, str] = {}
    cid = 0
    tid = 0
    end = date(2024, 7, 14)
    for group, n in GROUPS.items():
        for _ in range(n):
            cid += 1
            truth[cid] = group
            if group == "burner":
                join = date(2021, 7, 1) + timedelta(days=int(rng.integers(0, 540)))
                n_tx, p_burn = int(rng.integers(8, 13)), 0.9
            elif group == "collector":
                join = date(2022, 7, 1) + timedelta(days=int(rng.integers(0, 540)))
                n_tx, p_burn = int(rng.integers(4, 8)), 0.1
            else:
                join = date(2024, 1, 1) + timedelta(days=int(rng.integers(0, 150)))
                n_tx, p_burn = int(rng.integers(0, 3)), 0.5
            city = int(rng.integers(1, len(CITIES) + 1))
            gender = int(rng.integers(1, 3))
            customers.append([cid, _dt(join), city, gender])
            span = (end - join).days
            for _ in range(n_tx):
                tid += 1
                day = join + timedelta(days=int(rng.integers(0, max(span, 1))))
                burned = bool(rng.random() < p_burn)
                burn = _dt(min(day + timedelta(days=int(rng.integers(0, 30))), end)) if burned else None
                code = f"{''.join(chr(int(c)) for c in rng.integers(65, 91, 3))}-{int(rng.integers(100, 999))}"
                transactions.append(
                    [
                        tid,
                        cid,
                        _dt(day),
                        "burned" if burned else "subscribed",
                        code,
                        burn,
                        int(rng.integers(1, len(BRANCHES) + 1)),
                    ]
                )
    # quirks: customers
    customers.append([None, _dt(date(2023, 3, 3)), 1, 1])  # no customer id
    customers.append([5, _dt(date(2023, 4, 4)), 2, 2])  # duplicate of customer 5 (the first row stays)
    customers[10][2] = 99  # a city the cities sheet does not have
    # quirks: transactions
    transactions.append([tid + 1, 3, "not a date", "burned", "BAD-001", None, 1])
    transactions.append([tid + 2, 9999, _dt(date(2023, 1, 1)), "burned", "ORP-002", _dt(date(2023, 1, 2)), 2])
    transactions.append([tid + 3, 4, _dt(date(2023, 2, 2)), "cancelled", "CAN-003", None, 3])
    transactions.append(list(transactions[5]))  # the same transaction_id again
    sheets: dict[str, list[list[object]]] = {
        "customers": customers,
        "genders": [["gender_id", "gender_name"], *([i + 1, g] for i, g in enumerate(GENDERS))],
        "cities": [["city_id", "city_name"], *([i + 1, c] for i, c in enumerate(CITIES))],
        "transactions": transactions,
        "branches": [["branch_id", "merchant_id"], *([b, m] for b, m in BRANCHES.items())],
        "merchants": [["merchant_id", "merchant_name"], *([i + 1, m] for i, m in enumerate(MERCHANTS))],
    }
    return sheets, truth


def _dt(d: date) -> datetime:
    return datetime(d.year, d.month, d.day)


def write(path: Path = TARGET, seed: int = 7) -> Path:
    from openpyxl import Workbook

    sheets, _ = build(seed)
    wb = Workbook()
    wb.remove(wb.active)  # type: ignore[arg-type]
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    wb.properties.created = wb.properties.modified = datetime(2024, 7, 15)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    wb.save(tmp)
    tmp.replace(path)
    return path


def main() -> int:
    p = write()
    print(f"wrote {p} ({p.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
