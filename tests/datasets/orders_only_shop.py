"""A shop export the workbench has never seen: only an orders table and an experiments table.

* ``penjualan.csv``: Indonesian column names, numeric order and customer ids, channel names in
  upper case (``WEB``, ``TOKO`` is not used: the shop's vocabulary is web/app/marketplace/store),
  local timestamps without offset;
* ``eksperimen.csv``: units are *visitor keys*, not customers; no ``assigned_at``; a per-unit 0/1
  outcome column ``Converted``; the control arm is called ``control``.

Written by its own generator (not ``omni_lib.sample``): customers buy by a Poisson process and
drop out geometrically (a BG/NBD-like shop with other rates), so CLTV and churn have something
to find; the experiment has a planted lift of +30% on a 10% base rate.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

CONFIG = """\
# A shop with only an orders export and an experiments export (tests/datasets/orders_only_shop.py)
mode: production
data:
  format: csv
  root: .
  tables:
    orders:
      path: penjualan.csv
      columns: {order_id: NoPesanan, customer_id: IdPelanggan, order_ts: Tanggal, channel: Kanal,
                net_amount: TotalRp}
    experiments:
      path: eksperimen.csv
      columns: {experiment_id: ExperimentCode, unit_id: UnitKey, variant: Arm}
      outcomes: {converted: Converted}
timezone: Asia/Jakarta
currency: IDR
data_end: "2025-06-30"
privacy: {consent_default: true}
channels:
  web:         {kind: online,  role: sales}
  app:         {kind: online,  role: sales}
  marketplace: {kind: online,  role: sales}
  store:       {kind: offline, role: sales}
params: {experiment_id: PROMO_BANNER}
"""

TRUE_BASE_RATE = 0.10
TRUE_LIFT = 0.30


def write(folder: str | Path, n_customers: int = 3000, n_units: int = 8000, seed: int = 7) -> Path:
    """Write the two CSV files and ``omni.yaml`` into ``folder``; returns the config path."""
    rng = np.random.default_rng(seed)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    start, end = pd.Timestamp("2023-07-01"), pd.Timestamp("2025-06-30 23:59:59")
    span = (end - start).total_seconds() / 86400
    first = rng.uniform(0, span * 0.8, n_customers)
    rate = rng.gamma(2.0, 1 / 40.0, n_customers)              # purchases per day while active
    life = rng.exponential(250.0, n_customers)                 # days until the customer drops out
    rows = []
    for c in range(n_customers):                               # small: a loop is clearer here
        t, stop = first[c], min(span, first[c] + life[c])
        k = 0
        while t < stop:
            rows.append((c, t))
            k += 1
            t += rng.exponential(1 / rate[c])
    cust, day = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    pref = rng.dirichlet([3, 1, 1.5, 2], n_customers)          # each customer's channel mix
    ch = np.array([rng.choice(4, p=pref[c]) for c in cust])
    orders = pd.DataFrame({
        "NoPesanan": np.arange(100001, 100001 + len(rows)),
        "IdPelanggan": 5000 + cust,
        "Tanggal": (start + pd.to_timedelta(day, unit="D")).strftime("%Y-%m-%d %H:%M:%S"),
        "Kanal": np.array(["WEB", "APP", "MARKETPLACE", "STORE"])[ch],
        "TotalRp": np.round(rng.lognormal(11.8, 0.6, len(rows)), -2),
    }).sort_values("Tanggal")
    orders.to_csv(out / "penjualan.csv", index=False)
    arm = rng.random(n_units) < 0.5
    p = np.where(arm, TRUE_BASE_RATE * (1 + TRUE_LIFT), TRUE_BASE_RATE)
    exp = pd.DataFrame({"ExperimentCode": "PROMO_BANNER", "UnitKey": [f"V{i:06d}" for i in range(n_units)],
                        "Arm": np.where(arm, "treatment", "control"),
                        "Converted": (rng.random(n_units) < p).astype(int)})
    exp2 = pd.DataFrame({"ExperimentCode": "FREE_SHIPPING", "UnitKey": [f"W{i:06d}" for i in range(n_units // 2)],
                         "Arm": np.where(rng.random(n_units // 2) < 0.5, "treatment", "control"),
                         "Converted": (rng.random(n_units // 2) < 0.2).astype(int)})  # no effect
    pd.concat([exp, exp2]).to_csv(out / "eksperimen.csv", index=False)
    (out / "omni.yaml").write_text(CONFIG, encoding="utf-8")
    return out / "omni.yaml"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="write the orders-only test shop")
    ap.add_argument("folder")
    print(write(ap.parse_args().folder))
