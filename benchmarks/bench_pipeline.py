"""The whole pipeline at retailer size: `omni sample`, `omni prepare`, every notebook (`omni run`).

Prints wall time per step and per notebook and the peak resident memory of the whole process
tree (the command and every child: papermill kernels included), sampled every 0.25 s.
Goals (issue "The customer store", this 2-core 24 GB machine): 200,000 customers end to end
< 3 min; 1,000,000 customers < 10 min with peak RSS < 8 GB.

    .venv/bin/python benchmarks/bench_pipeline.py                      # 200k, then 1M
    .venv/bin/python benchmarks/bench_pipeline.py --customers 200000   # one size
    .venv/bin/python benchmarks/bench_pipeline.py --customers 1000000 --timeout 3600

Each size is generated into its own folder under --work (default benchmarks/results/pipeline);
a step that exceeds --timeout (seconds) is stopped and reported, the next size still runs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
OMNI = [sys.executable, "-m", "omni_lib.cli"]


def _tree_rss(p: psutil.Process) -> int:
    total = 0
    for q in [p, *p.children(recursive=True)]:
        try:
            total += q.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def timed(cmd: list[str], cwd: Path, timeout: float, env: dict | None = None) -> dict:
    """Run ``cmd``; wall seconds, peak RSS of its process tree (bytes), exit code, output tail."""
    t0 = time.perf_counter()
    log = cwd / f".bench-{int(t0 * 1000)}.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        ps = psutil.Process(proc.pid)
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                try:
                    peak[0] = max(peak[0], _tree_rss(ps))
                except psutil.NoSuchProcess:
                    break
                time.sleep(0.25)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in ps.children(recursive=True):
                q.kill()
            proc.kill()
            rc = "timeout"
        done.set()
        th.join()
    tail = log.read_text(errors="replace").splitlines()[-8:]
    log.unlink(missing_ok=True)
    return {"seconds": time.perf_counter() - t0, "peak_rss": peak[0], "rc": rc, "tail": tail}


def write_config(data: Path) -> Path:
    text = (ROOT / "omni.yaml").read_text()
    text = text.replace("root: data/sample", f"root: {data}")
    cfg = data.parent / "omni.yaml"
    cfg.write_text(text)
    return cfg


def run_size(n: int, work: Path, timeout: float) -> list[dict]:
    folder = work / f"c{n}"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    rows = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("OMNI_CONFIG", None)
    meta = data / "meta.json"
    if meta.exists() and json.loads(meta.read_text()).get("n_customers") == n:
        print(f"[{n:,}] sample already there: {data}")
    else:
        r = timed(OMNI + ["sample", "--customers", str(n), "--out", str(data), "-q"], folder, timeout, env)
        rows.append({"step": "omni sample", **r})
        print(f"[{n:,}] sample {r['seconds']:.0f} s, peak {r['peak_rss'] / 2**30:.1f} GB, rc {r['rc']}")
    cfg = write_config(data)
    t_all = time.perf_counter()
    peak_all = 0
    r = timed(OMNI + ["prepare", "--force", "--config", str(cfg)], folder, timeout, env)
    rows.append({"step": "omni prepare", **r})
    peak_all = max(peak_all, r["peak_rss"])
    print(f"[{n:,}] prepare {r['seconds']:.0f} s, peak {r['peak_rss'] / 2**30:.1f} GB, rc {r['rc']}")
    if r["rc"] == 0:
        timings = json.loads(subprocess.run(
            [sys.executable, "-c", "import json,sys; from omni_lib.store import read_meta; from omni_lib.config import "
             f"load_config; print(json.dumps(read_meta(load_config({str(cfg)!r}).store_path).get('timings', {{}})))"],
            capture_output=True, text=True, env=env).stdout or "{}")
        for k, v in timings.items():
            rows.append({"step": f"  prepare: {k}", "seconds": v, "peak_rss": None, "rc": ""})
        r = timed(OMNI + ["run", "--config", str(cfg), "--out", str(folder / "reports")], folder, timeout, env)
        rows.append({"step": "omni run (9 notebooks)", **r})
        peak_all = max(peak_all, r["peak_rss"])
        print(f"[{n:,}] run {r['seconds']:.0f} s, peak {r['peak_rss'] / 2**30:.1f} GB, rc {r['rc']}")
        runs = sorted((folder / "reports").glob("2*/run.json"))
        if runs:
            for nb in json.loads(runs[-1].read_text())["notebooks"]:
                rows.append({"step": f"  {nb['notebook']}", "seconds": nb["duration_s"], "peak_rss": None,
                             "rc": nb["status"]})
        if r["rc"] != 0:
            print("\n".join(r["tail"]))
    rows.append({"step": "prepare + notebooks (end to end)", "seconds": time.perf_counter() - t_all,
                 "peak_rss": peak_all, "rc": ""})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "results" / "pipeline")
    ap.add_argument("--timeout", type=float, default=2400, help="seconds per step before it is stopped")
    args = ap.parse_args(argv)
    goals = {200_000: (180, None), 1_000_000: (600, 8 * 2**30)}
    for n in args.customers:
        rows = run_size(n, args.work, args.timeout)
        print(f"\n== {n:,} customers")
        print(f"{'step':<40} {'wall s':>9} {'peak RSS GB':>12}  status")
        for r in rows:
            rss = f"{r['peak_rss'] / 2**30:.2f}" if r.get("peak_rss") else ""
            print(f"{r['step']:<40} {r['seconds']:>9.1f} {rss:>12}  {r['rc']}")
        end = rows[-1]
        g_t, g_m = goals.get(n, (None, None))
        if g_t:
            verdict = "met" if end["seconds"] < g_t and (g_m is None or end["peak_rss"] < g_m) else "MISSED"
            print(f"goal: < {g_t / 60:.0f} min" + (f", peak < {g_m / 2**30:.0f} GB" if g_m else "") + f": {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
