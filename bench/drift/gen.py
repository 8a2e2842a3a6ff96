"""Writes the drift benchmark's data: a reference and a current Parquet file of ROWS rows x 20
columns each (10 float, 4 int, 6 text), from a fixed seed, so every run compares the same
bytes. The current file moves 6 columns for real (shifts, a scale change, new shares, new
categories), nudges one by 0.02 standard deviations (noise, not drift) and leaves the rest as
they were.

Usage: python gen.py OUT_DIR [ROWS]   (ROWS defaults to 1,000,000)
"""

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20261129


def categories(prefix, n):
    return np.array([f"{prefix}{i:03d}" for i in range(n)])


def frame(rng, rows, current):
    """The 20 columns; `current` moves some of them."""
    cols = {}
    shift = 0.5 if current else 0.0
    cols["n0_normal_shifted"] = rng.normal(10.0 + shift * 2.0, 2.0, rows)
    cols["n1_lognormal_scaled"] = rng.lognormal(0.0, 1.0, rows) * (1.3 if current else 1.0)
    cols["n2_exponential"] = rng.exponential(3.0, rows)
    cols["n3_uniform"] = rng.uniform(-5.0, 5.0, rows)
    cols["n4_gamma"] = rng.gamma(2.0, 2.0, rows)
    cols["n5_normal_nudged"] = rng.normal(0.02 if current else 0.0, 1.0, rows)
    cols["n6_student_t"] = rng.standard_t(5, rows)
    mix = rng.uniform(size=rows) < (0.5 if current else 0.3)
    cols["n7_bimodal_mix"] = np.where(mix, rng.normal(-2, 0.5, rows), rng.normal(2, 0.5, rows))
    n8 = rng.normal(100.0, 15.0, rows)
    n8[rng.uniform(size=rows) < 0.01] = np.nan  # 1 % missing
    cols["n8_normal_missing"] = n8
    rain = rng.uniform(size=rows) < 0.8
    cols["n9_zero_inflated"] = np.where(rain, 0.0, rng.exponential(1.0, rows))
    cols["i0_poisson"] = rng.poisson(33 if current else 30, rows).astype(np.int64)
    cols["i1_five_values"] = rng.integers(0, 5, rows).astype(np.int64)
    cols["i2_uniform_ints"] = rng.integers(0, 1000, rows).astype(np.int64)
    cols["i3_binomial"] = rng.binomial(10, 0.3, rows).astype(np.int64)
    cols["c0_three_shares"] = rng.choice(
        categories("a", 3), rows, p=[0.3, 0.3, 0.4] if current else [0.5, 0.3, 0.2]
    )
    cols["c1_ten"] = rng.choice(categories("b", 10), rows)
    c2 = categories("c", 60) if current else categories("c", 50)  # 10 new values
    cols["c2_new_values"] = rng.choice(c2, rows)
    cols["c3_yes_no"] = rng.choice(np.array(["yes", "no"]), rows, p=[0.2, 0.8])
    cols["c4_seven"] = rng.choice(categories("d", 7), rows)
    zipf = np.minimum(rng.zipf(1.6, rows), 100) - 1
    cols["c5_zipf_100"] = categories("e", 100)[zipf]
    return pa.table(cols)


def main():
    out = Path(sys.argv[1])
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for name, current in [("reference", False), ("current", True)]:
        pq.write_table(frame(rng, rows, current), out / f"{name}.parquet", compression="snappy")
    print(f"wrote {out}/reference.parquet and {out}/current.parquet, {rows:,} rows x 20 columns")


if __name__ == "__main__":
    main()
