"""Benchmark: resolve about a million identity records; print time, peak memory and F1.

    python benchmarks/bench_identity.py                    # makes a 600,000-customer sample (~1M records)
    python benchmarks/bench_identity.py --data /tmp/s600k  # reuse a sample made by `omni sample`
    python benchmarks/bench_identity.py --scenarios        # quality table per scenario mix (issue 19)

``--scenarios`` prints, per scenario mix of :mod:`omni_lib.identity_scenarios` and for the
default sample, pairwise precision / recall / F1 of the resolver and of the deterministic
rule (same normalised e-mail, or card, or phone with agreeing first names) side by side,
and the resolver's own estimate of F1 (no labels) against the true F1.

Splink's authors report linking a million records on a laptop in about a minute; this
measures the whole resolution (normalisation, deterministic links, Splink training
and scoring on DuckDB, clustering, pseudonymisation) on this machine, and the quality
against the sample's planted truth. Peak memory is the process's maximum resident set
(DuckDB's memory included, which Python's tracemalloc would not see).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omni_lib.identity import IdentityResolver, pairwise_quality  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="folder of a sample made by `omni sample` (with truth/)")
    ap.add_argument("--customers", type=int, default=600_000, help="customers when a sample is generated")
    ap.add_argument("--threshold", type=float, default=None, help="resolver threshold (default: the resolver's)")
    ap.add_argument("--scenarios", action="store_true", help="quality table per scenario mix instead")
    args = ap.parse_args(argv)
    if args.scenarios:
        return scenarios(args.data)

    if args.data:
        data = Path(args.data)
    else:
        data = Path(tempfile.mkdtemp(prefix="omni-bench-identity-"))
        print(f"generating a {args.customers:,}-customer sample in {data} ...", flush=True)
        t0 = time.perf_counter()
        from omni_lib.sample import generate

        generate(out_dir=data, n_customers=args.customers, progress=False)
        print(f"  generated in {time.perf_counter() - t0:.0f} s", flush=True)

    ids = pd.read_parquet(data / "identities.parquet")
    truth = pd.read_parquet(data / "truth" / "identity_links.parquet")
    rss0 = _rss_mb()
    print(f"identity records: {len(ids):,} ({truth['customer_id'].nunique():,} true customers); "
          f"{os.cpu_count()} cores; memory before resolving {rss0:,.0f} MB", flush=True)

    kw = {} if args.threshold is None else {"threshold": args.threshold}
    t0 = time.perf_counter()
    res = IdentityResolver(key=b"benchmark-key-0123456789", **kw).fit(ids)
    seconds = time.perf_counter() - t0
    peak = _rss_mb()
    q = pairwise_quality(res.links_, truth)

    print(f"\nresolved {len(ids):,} records into {res.counts_['unified_customers']:,} customers "
          f"in {seconds:.1f} s ({len(ids) / seconds:,.0f} records/s)")
    print("time per step (s): " + ", ".join(f"{k} {v:.1f}" for k, v in res.timings_.items()))
    print(f"pairs scored: {res.counts_['pairs_scored']:,}; clustering rounds: {res.rounds_}")
    print(f"peak memory (max RSS of the process): {peak:,.0f} MB")
    print(f"F1 {q['f1']:.4f}  precision {q['precision']:.4f}  recall {q['recall']:.4f}  "
          f"purity {q['purity']:.4f}  inverse purity {q['inverse_purity']:.4f}")
    print(f"records with no usable key: {res.counts_['no_usable_key']:,}")
    print(f"estimated without labels: F1 {res.quality_['f1']:.4f} (precision {res.quality_['precision']:.4f}, "
          f"recall {res.quality_['recall']:.4f})")
    return 0


def scenarios(sample: str | None = None) -> int:
    from omni_lib import identity_scenarios as sc
    from omni_lib.identity import pairwise_quality as pq

    data = Path(sample) if sample else ROOT / "data" / "sample"
    mixes = [("sample (default, seed 42)", "sample")] + [(k, k) for k in sc.MIXES]
    print("| mix | role | records | resolver P | R | F1 | rule P | R | F1 | estimated F1 | true F1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, k in mixes:
        if k == "sample":
            ids = pd.read_parquet(data / "identities.parquet")
            truth = pd.read_parquet(data / "truth" / "identity_links.parquet")
            role = "development"
        else:
            ids, truth = sc.generate(k)
            role = sc.MIXES[k].role
        res = IdentityResolver().fit(ids)
        q, r = pq(res.links_, truth), pq(sc.deterministic_rule(ids), truth)
        print(f"| {label} | {role} | {len(ids):,} | {q['precision']:.3f} | {q['recall']:.3f} | **{q['f1']:.3f}** | "
              f"{r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {res.quality_['f1']:.3f} | {q['f1']:.3f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
