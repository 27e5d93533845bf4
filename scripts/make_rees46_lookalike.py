"""Rebuild tests/data/events/rees46_lookalike.csv.gz: generated events in the REES46 layout, with its quirks.

The real REES46 sample (../shared/data/rees46_2019oct_head) states no licence, so no slice of it is committed;
this look-alike has the same columns, the same text forms ('2019-10-01 00:00:00 UTC', empty category codes and
brands, prices of 0 on some views) and, like the sample, 5 exact duplicate rows.

python scripts/make_rees46_lookalike.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from shopseg.datasets_events import generate_events

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "events" / "rees46_lookalike.csv.gz"
COLUMNS = [
    "event_time",
    "event_type",
    "product_id",
    "category_id",
    "category_code",
    "brand",
    "price",
    "user_id",
    "user_session",
]


def main() -> int:
    events = generate_events(120, seed=46, days=2).events[COLUMNS].copy()
    rng = np.random.default_rng(46)
    views = np.flatnonzero(events["event_type"].to_numpy() == "view")
    events.loc[rng.choice(views, 3, replace=False), "price"] = 0.0  # like the sample's zero-price views
    dups = events.iloc[np.sort(rng.choice(len(events), 5, replace=False))]
    events = pd.concat([events, dups]).sort_values("event_time", kind="stable")
    events["event_time"] = events["event_time"].dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    events["product_id"] = events["product_id"].astype("Int64")
    events["category_id"] = events["category_id"].astype("Int64")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    events.to_csv(OUT, index=False, compression={"method": "gzip", "mtime": 0})
    print(f"wrote {OUT} ({len(events)} rows, {OUT.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
