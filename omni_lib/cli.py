"""The ``omni`` command line: sample data, validation, report runs and data-subject rights."""
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


def _cmd_identity_review(args) -> int:
    from .config import ConfigError
    from .identity import IdentityInputError, IdentityResolver
    from .io import load
    from .schema import ContractError

    try:
        ds = load(args.config, tables=["identities"])
        ids = ds.tables.get("identities")
        if ids is None:
            print("config error: no identities table is configured (data.tables.identities)", file=sys.stderr)
            return 2
        res = IdentityResolver(**ds.config.identity).fit(ids)
    except (ConfigError, IdentityInputError, ContractError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    review = res.review_pairs(args.n)
    out.parent.mkdir(parents=True, exist_ok=True)
    review.to_csv(out, index=False)
    q = res.quality_
    print(f"{len(review):,} pairs to review -> {out} (values masked). Fill in 'label' with 'match' or "
          f"'no match' and set identity.labels: {out} in the config; they are used on the next fit.")
    print(f"estimated without labels: precision {q['precision']:.3f}, recall {q['recall']:.3f}, "
          f"F1 {q['f1']:.3f}; {q['uncertain_pairs']:,} uncertain pairs")
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
    if result.ok and not result.moved_latest:
        print("reports/latest unchanged: it points at the newest run of all notebooks.")
    if not result.ok:
        print("", file=sys.stderr)
        for r in result.failed:
            print(f"FAILED: {r.failure_line()}", file=sys.stderr)
            print(f"  executed notebook kept for inspection: {result.run_dir / (r.notebook + '.ipynb')}",
                  file=sys.stderr)
        print("reports/latest still points at the previous successful run.", file=sys.stderr)
        return 1
    return 0


def _cmd_erase(args) -> int:
    from .config import ConfigError
    from .io import ContractError
    from .privacy import PrivacyError, erase_customer

    try:
        s = erase_customer(args.customer, args.config, reports_dir=args.reports, dry_run=args.dry_run,
                           resolve=not args.no_resolve)
    except (PrivacyError, ConfigError, ContractError) as exc:
        print(f"omni erase: {exc}", file=sys.stderr)
        return 2
    verb = "would remove" if s["dry_run"] else "removed"
    print(f"{'DRY RUN: nothing changed. ' if s['dry_run'] else ''}Customer {args.customer}: {verb}")
    for table, n in s["rows_removed"].items():
        print(f"  {table:<12} {n:>8,} rows")
    print(f"  identity records: {s['identity_records']:,} "
          f"({s['identity_records_via_resolution']:,} found by identity resolution)")
    print(f"  report files with their ids {'to redact' if s['dry_run'] else 'redacted'}: "
          f"{s['report_files_redacted']:,}")
    if not s["dry_run"]:
        print(f"Logged (customer id pseudonymised) in {s['log']}")
    return 0


def _cmd_export(args) -> int:
    from .config import ConfigError
    from .io import ContractError
    from .privacy import PrivacyError, export_customer

    try:
        path = export_customer(args.customer, args.config, out=args.out, resolve=not args.no_resolve)
    except (PrivacyError, ConfigError, ContractError) as exc:
        print(f"omni export-customer: {exc}", file=sys.stderr)
        return 2
    print(f"Wrote everything held about customer {args.customer} to {path}")
    print("The file holds personal data: give it to the person, do not keep copies.", file=sys.stderr)
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

            Rights of the data subject:
              omni export-customer --customer ID   # everything held about one person
              omni erase --customer ID             # remove one person everywhere, logged
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
            points at the newest run of all notebooks where every one passed. A failing notebook does
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
    r.add_argument("--config", default=None, help="config file (default: $OMNI_CONFIG or ./omni.yaml)")
    r.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="override a notebook parameter; value parsed as YAML; repeatable")
    r.add_argument("--out", default=None, metavar="DIR",
                   help="reports folder (default: reports/ beside the config)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_run)

    e = sub.add_parser(
        "erase", formatter_class=_FMT, help="remove one customer from all stored tables and reports (logged)",
        description=_dedent("""
            Right to erasure (GDPR art. 17, Indonesia's PDP law): remove one person from
            every table configured in omni.yaml and from the derived outputs.

            * Tables: every row keyed by the customer id (customers, orders, touchpoints,
              surveys, tickets, experiments), the touchpoints of their orders, and their
              identity records: those their orders name plus those identity resolution
              linked to them (never a record that orders tie to someone else). The data
              files are rewritten in place in their own format (CSV, Parquet, DuckDB).
            * Reports: their customer, order and record ids in reports/ are replaced by
              [erased]; aggregate figures stay (they are no one's personal data).
            * Log: one line in privacy/erasure_log.jsonl beside the config: time, counts
              and the customer id as a keyed hash (OMNI_PSEUDONYM_KEY), not in clear.

            Try --dry-run first. Exit 0 = done, 2 = unknown customer, no key outside
            sample mode, or a broken config. Regenerating the sample (omni sample)
            brings the sample's synthetic person back.
        """),
        epilog=_dedent("""
            examples:
              omni erase --customer C0000123 --dry-run   # what would go, nothing changed
              omni erase --customer C0000123
        """),
    )
    e.add_argument("--customer", required=True, metavar="ID", help="the customer id (customers.customer_id)")
    e.add_argument("--config", default="omni.yaml", help="config file (default ./omni.yaml)")
    e.add_argument("--reports", default=None, metavar="DIR",
                   help="reports folder to redact (default: reports/ beside the config)")
    e.add_argument("--dry-run", action="store_true", help="only show what would be removed")
    e.add_argument("--no-resolve", action="store_true",
                   help="skip identity resolution: erase only the identity records their orders name")
    e.set_defaults(func=_cmd_erase)

    x = sub.add_parser(
        "export-customer", formatter_class=_FMT, help="write everything held about one customer to a JSON file",
        description=_dedent("""
            Right of access and data portability (GDPR art. 15 and 20, PDP law): write
            every row held about one person, table by table with contract column names,
            to one JSON file, together with the unified customer id(s) and the identity
            records that identity resolution linked to them, and whether an erasure of
            this id was logged before.

            The file holds the person's own e-mail, phone and name: hand it over, do not
            keep it, and never put it under reports/.
        """),
        epilog="example: omni export-customer --customer C0000123 --out /secure/outbox/C0000123.json",
    )
    x.add_argument("--customer", required=True, metavar="ID", help="the customer id (customers.customer_id)")
    x.add_argument("--config", default="omni.yaml", help="config file (default ./omni.yaml)")
    x.add_argument("--out", default=None, metavar="FILE",
                   help="output file (default ./export_<ID>.json)")
    x.add_argument("--no-resolve", action="store_true",
                   help="skip identity resolution: only the identity records their orders name")
    x.set_defaults(func=_cmd_export)

    ir = sub.add_parser(
        "identity-review", formatter_class=_FMT,
        help="export the identity pairs the resolver is least sure about, masked, for labelling",
        description=_dedent("""
            Clerical review of identity resolution. Resolves the configured identities and
            writes the N pairs of records closest to an even chance to a CSV, with masked
            values only (b***@gmail.com, the last 4 phone digits, initials, city, month
            created). Fill in the 'label' column with 'match' or 'no match' (leave empty to
            skip) and point identity.labels in omni.yaml at the file: the next resolution
            joins or keeps apart the labelled pairs (and, with 500 or more labelled matches,
            learns the model's m probabilities from them). Labels already given are not
            asked again.
        """),
        epilog="example: omni identity-review --n 200 --out data/identity_labels.csv",
    )
    ir.add_argument("--config", default=None, help="config file (default: $OMNI_CONFIG or ./omni.yaml)")
    ir.add_argument("--n", type=int, default=200, help="number of pairs (default 200)")
    ir.add_argument("--out", default="identity_review.csv", metavar="FILE", help="CSV to write")
    ir.set_defaults(func=_cmd_identity_review)
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
