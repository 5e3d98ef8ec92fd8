"""The ``omni`` command line: sample data, validation and report runs."""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from . import __version__

_FMT = argparse.RawDescriptionHelpFormatter


def _dedent(s: str) -> str:
    return textwrap.dedent(s).strip("\n")


def _cmd_sample(args) -> int:
    from .sample import generate

    out = Path(args.out)
    print(f"Generating the Toko Nusantara sample: {args.customers:,} customers, seed {args.seed} -> {out}/",
          file=sys.stderr)
    summary = generate(out_dir=out, n_customers=args.customers, seed=args.seed, progress=not args.quiet)
    rows = summary.get("rows", {})
    for table, n in rows.items():
        print(f"  {table:<12} {n:>12,} rows")
    if "seconds" in summary:
        print(f"done in {summary['seconds']:.1f} s; planted truth in {out / 'truth'}/")
    return 0


def _cmd_validate(args) -> int:
    from .config import ConfigError
    from .io import check
    from .schema import format_problems

    try:
        problems = check(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if problems:
        print(f"The data does NOT meet the contract: {len(problems)} problem(s)\n", file=sys.stderr)
        print(format_problems(problems), file=sys.stderr)
        return 1
    print(f"OK: the data configured in {args.config} meets the contract.")
    return 0


def _cmd_run(args) -> int:
    from .runner import RunError, parse_overrides, run

    try:
        result = run(
            args.notebooks,
            config_path=args.config,
            overrides=parse_overrides(args.param),
            reports_dir=args.out,
            progress=not args.quiet,
        )
    except RunError as exc:
        print(f"omni run: {exc}", file=sys.stderr)
        return 2
    print(f"\nRun {result.run_id}: {result.run_dir}")
    for r in result.results:
        mark = "ok    " if r.status == "ok" else "FAILED"
        print(f"  {mark} {r.notebook:<28} {r.duration_s:7.1f} s  {r.headline or ''}")
    print(f"Open {result.run_dir / 'index.html'}")
    if not result.ok:
        print("", file=sys.stderr)
        for r in result.failed:
            print(f"FAILED: {r.failure_line()}", file=sys.stderr)
            print(f"  executed notebook kept for inspection: {result.run_dir / (r.notebook + '.ipynb')}",
                  file=sys.stderr)
        print("reports/latest still points at the previous successful run.", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="omni",
        formatter_class=_FMT,
        description=_dedent("""
            Omni Workbench: omnichannel customer analytics from channel data.

            Typical session:
              omni sample              # make the bundled Toko Nusantara sample (data/sample/)
              omni validate            # check the configured data against the contract
              omni run                 # run every notebook, HTML reports in reports/<run_id>/
        """),
    )
    p.add_argument("--version", action="version", version=f"omni {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser(
        "sample", formatter_class=_FMT, help="generate the seeded sample retailer (Toko Nusantara)",
        description=_dedent("""
            Generate the seeded sample retailer "Toko Nusantara": all nine contract tables
            as Parquet plus the planted truth (segments, purchase and churn rates,
            experiment effects, channel contributions, identity links) in <out>/truth/.
            The same seed always gives byte-identical files.
        """),
        epilog="example: omni sample --customers 1000000 --out data/sample_1m",
    )
    s.add_argument("--customers", type=int, default=20_000, metavar="N",
                   help="number of customers (default 20,000; 1,000,000 works within 24 GB)")
    s.add_argument("--seed", type=int, default=42, metavar="S", help="random seed (default 42)")
    s.add_argument("--out", default="data/sample", metavar="DIR", help="output folder (default data/sample)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_sample)

    v = sub.add_parser(
        "validate", formatter_class=_FMT, help="check the configured data against the contract",
        description=_dedent("""
            Load every table configured in omni.yaml and check it against the data contract
            (docs/contract.md). Reports EVERY problem at once: table, column, check, number
            of bad rows and example values. Exit code 0 = the data meets the contract,
            1 = problems found, 2 = the config itself is broken.
        """),
    )
    v.add_argument("--config", default="omni.yaml", help="config file (default ./omni.yaml)")
    v.set_defaults(func=_cmd_validate)

    r = sub.add_parser(
        "run", formatter_class=_FMT, help="execute notebooks and write HTML reports",
        description=_dedent("""
            Execute notebooks headless with Papermill and publish reports/<run_id>/:
            one HTML report per notebook (no code), its key figures as <notebook>.json,
            the executed notebook, and index.html listing the run with status and
            headline figures. The run folder appears whole or not at all; reports/latest
            points at the newest run where every notebook passed. A failing notebook does
            not stop the others; the command then exits 1 and names the notebook and cell.

            Parameters come from the notebook's defaults, then `params:` in the config,
            then -p overrides. Each notebook only receives the parameters it declares.
        """),
        epilog=_dedent("""
            examples:
              omni run                                  # every notebook
              omni run 00_data_health                   # one notebook (name, NN prefix or path)
              omni run 00 -p freq=M                     # override a parameter
        """),
    )
    r.add_argument("notebooks", nargs="*", metavar="NOTEBOOK",
                   help="notebooks to run (default: all notebooks/NN_*.ipynb)")
    r.add_argument("--config", default="omni.yaml", help="config file (default ./omni.yaml)")
    r.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="override a notebook parameter; value parsed as YAML; repeatable")
    r.add_argument("--out", default=None, metavar="DIR",
                   help="reports folder (default: reports/ beside the config)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
