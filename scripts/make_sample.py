"""Rebuild the bundled sample ``src/shopseg/data/online_retail_sample.csv.gz`` from the full Online Retail file.

Whole customers are kept (every line of 600 customers drawn with a fixed seed), plus every line of a seeded
12% of the invoices without a customer id and the three 'A' bad-debt adjustments, so all the quirks of the
real file stay in. It is written in the layout of the classic Kaggle copy: ISO-8859-1 text, US dates
("12/1/2010 8:26") and customer ids written as floats ("17850.0").

    python scripts/make_sample.py ../shared/data/online_retail/online_retail.parquet
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

N_CUSTOMERS = 600
ANON_INVOICE_SHARE = 0.12
SEED = 20101201


def main(src: str) -> None:
    df = pd.read_parquet(src)
    rng = np.random.default_rng(SEED)
    customers = np.sort(df["CustomerID"].dropna().unique())
    chosen = set(rng.choice(customers, N_CUSTOMERS, replace=False).tolist())
    anon_invoices = np.sort(df.loc[df["CustomerID"].isna(), "InvoiceNo"].unique())
    anon = set(rng.choice(anon_invoices, int(len(anon_invoices) * ANON_INVOICE_SHARE), replace=False).tolist())
    keep = (
        df["CustomerID"].isin(chosen)
        | (df["CustomerID"].isna() & df["InvoiceNo"].isin(anon))
        | df["InvoiceNo"].str.startswith("A")
    )
    out = df[keep].copy()
    d = out["InvoiceDate"]
    out["InvoiceDate"] = (
        d.dt.month.astype(str)
        + "/"
        + d.dt.day.astype(str)
        + "/"
        + d.dt.year.astype(str)
        + " "
        + d.dt.hour.astype(str)
        + ":"
        + d.dt.minute.map("{:02d}".format)
    )
    out["CustomerID"] = out["CustomerID"].map(lambda v: "" if pd.isna(v) else f"{float(v):.1f}")
    target = Path(__file__).resolve().parents[1] / "src" / "shopseg" / "data" / "online_retail_sample.csv.gz"
    out.to_csv(target, index=False, encoding="iso-8859-1", compression={"method": "gzip", "mtime": 0})
    print(f"{len(out)} rows, {out['CustomerID'].replace('', np.nan).nunique()} customers -> {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/online_retail/online_retail.parquet")
