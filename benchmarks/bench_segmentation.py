"""Benchmark: segment 1,000,000 customers end to end (features included).

    .venv/bin/python benchmarks/bench_segmentation.py [--data DIR] [--customers N]

Uses the sample retailer in ``--data`` (default /tmp/omni_bench_1m; generated there
with ``omni sample`` when missing, which takes about ten minutes). Steps, each timed,
with the peak resident memory of the process during the step:

1. load customers, orders, surveys and tickets through ``omni_lib.io.load``
   (read, cast, validate against the contract) and apply the consent rule;
2. ``customer_features`` (R/F/M, channel mix, online share, breadth, discount,
   returns, service contacts, NPS);
3. fit ``BehaviouralSegmenter`` (full KMeans, k = 6, single-threaded; MiniBatchKMeans is
   fitted too, for comparison, and not counted);
4. RFM scores, segment profiles, persona names and the customer -> segment table.

"Segmentation" = steps 2-4 (the target: under 60 s on a 2-core machine); loading is
shown apart because every analysis shares it. The adjusted Rand index against the
planted segments is printed too (not timed). Nothing is asserted: the numbers are
for reading.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from omni_lib import io, privacy  # noqa: E402
from omni_lib import segmentation as sg  # noqa: E402


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: fall back to the lifetime peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Step:
    """Times a block and samples the process's resident memory every 20 ms."""

    rows: list[tuple[str, float, float]] = []

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        self.t0 = time.perf_counter()
        return self

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        secs = time.perf_counter() - self.t0
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())
        Step.rows.append((self.name, secs, self.peak))
        print(f"  {self.name:<44} {secs:7.1f} s   peak RSS {self.peak / 1024:6.2f} GB", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/tmp/omni_bench_1m", help="sample folder (generated if missing)")
    ap.add_argument("--customers", type=int, default=1_000_000, help="customers when generating")
    ap.add_argument("--k", type=int, default=6, help="number of segments")
    args = ap.parse_args(argv)

    data = Path(args.data)
    if not (data / "meta.json").exists():
        from omni_lib.sample import generate

        print(f"generating {args.customers:,} customers into {data} (once; about 10 minutes for 1M) ...", flush=True)
        generate(out_dir=data, n_customers=args.customers)
    cfg = yaml.safe_load((ROOT / "omni.yaml").read_text())
    cfg["data"] = {**cfg["data"], "root": str(data.resolve())}
    cfg_path = data / "bench_segmentation.omni.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))

    print(f"segmentation benchmark on {data} ({os.cpu_count()} cores)")
    with Step("1 load + validate 4 tables, consent"):
        ds = io.load(cfg_path, tables=["customers", "orders", "surveys", "tickets"])
        tables, info = privacy.apply_consent(ds.tables)
    n_orders = len(tables["orders"])
    with Step("2 customer features"):
        feats = sg.customer_features(tables, ds.config.channels, as_of=ds.config.data_end)
    with Step(f"3 fit KMeans k={args.k} (n_init=3, 1 thread)"):
        model = sg.BehaviouralSegmenter(args.k, algorithm="kmeans", n_init=3).fit(feats)
    with Step(f"3b for comparison: MiniBatchKMeans k={args.k}"):
        mini = sg.BehaviouralSegmenter(args.k, algorithm="minibatch", n_init=3).fit(feats)
    with Step("4 RFM, profiles, personas, customer table"):
        rfm = sg.rfm_scores(feats)
        profiles = sg.segment_profiles(feats, model.labels_, tables.get("surveys"))
        names = sg.persona_names(profiles)
        table = sg.customer_segment_table(feats, model.labels_, names.to_dict(), rfm, tables["customers"])

    in_seg = [r for r in Step.rows if r[0][:2] in ("2 ", "3 ", "4 ")]  # 3b is a comparison
    seg_secs = sum(s for _, s, _ in in_seg)
    seg_peak = max(p for _, _, p in in_seg)
    total = sum(s for _, s, _ in Step.rows)
    print(f"\ncustomers segmented: {len(table):,} (orders: {n_orders:,}; {info['note']})")
    print(f"segmentation end to end (features + fit + profiles, steps 2-4): {seg_secs:.1f} s "
          f"(target < 60 s), peak RSS {seg_peak / 1024:.2f} GB")
    print(f"including loading: {total:.1f} s; process peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")
    truth_file = data / "truth" / "customers.parquet"
    if truth_file.exists():
        truth = pd.read_parquet(truth_file, columns=["customer_id", "segment"]).set_index("customer_id")["segment"]
        truth = truth.reindex(feats.index)
        print(f"adjusted Rand index vs planted segments: KMeans {adjusted_rand_score(truth, model.labels_):.3f}, "
              f"MiniBatchKMeans {adjusted_rand_score(truth, mini.labels_):.3f}")
    print("segments:", ", ".join(f"{names[i]} {profiles.loc[i, 'customer_share']:.0%}" for i in profiles.index))
    return 0


if __name__ == "__main__":
    sys.exit(main())
