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

    if args.customers < 1:
        print(f"omni sample: --customers must be a whole number of at least 1, got {args.customers}",
              file=sys.stderr)
        return 2
    if args.seed < 0:
        print(f"omni sample: --seed must be 0 or more, got {args.seed}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"omni sample: --out {out} is a file, not a folder", file=sys.stderr)
        return 2
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

    from .config import config_source

    try:
        print(f"omni validate: {config_source(args.config)}", file=sys.stderr)
        problems = check(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if problems:
        print(f"The data does NOT meet the contract: {len(problems)} problem(s)\n", file=sys.stderr)
        print(format_problems(problems), file=sys.stderr)
        return 1
    print("OK: the configured data meets the contract.")
    return 0


def _cmd_prepare(args) -> int:
    from .config import ConfigError, config_source, load_config
    from .privacy import PrivacyError
    from .schema import ContractError, format_problems
    from .store import prepare

    try:
        print(f"omni prepare: {config_source(args.config)}", file=sys.stderr)
        cfg = load_config(args.config)
        meta = prepare(cfg, force=args.force, progress=not args.quiet)
    except ContractError as exc:
        print(f"The data does NOT meet the contract: {len(exc.problems)} problem(s); the store was not changed\n",
              file=sys.stderr)
        print(format_problems(exc.problems), file=sys.stderr)
        return 1
    except (ConfigError, PrivacyError) as exc:
        print(f"omni prepare: {exc}", file=sys.stderr)
        return 2
    state = "rebuilt" if meta.get("rebuilt") else "already up to date"
    print(f"Store {cfg.store_path}: {state}")
    for table, n in (meta.get("rows") or {}).items():
        print(f"  {table:<16} {n:>12,} rows")
    if meta.get("consent", {}).get("note"):
        print(f"Consent: {meta['consent']['note']}")
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
    from .runner import RunError, RunInterrupted, parse_overrides, run

    try:
        result = run(
            args.notebooks,
            config_path=args.config,
            overrides=parse_overrides(args.param),
            reports_dir=args.out,
            progress=not args.quiet,
            jobs=args.jobs,
        )
    except RunError as exc:
        print(f"omni run: {exc}", file=sys.stderr)
        return 2
    except RunInterrupted as exc:
        print(f"\nomni run: {exc}: kernels ended, nothing published, reports/latest unchanged.",
              file=sys.stderr)
        return exc.exit_code
    print(f"\nRun {result.run_id}: {result.run_dir}")
    for r in result.results:
        mark = {"ok": "ok     ", "skipped": "skipped"}.get(r.status, "FAILED ")
        text = r.reason if r.status == "skipped" else (r.headline or "")
        print(f"  {mark} {r.notebook:<28} {r.duration_s:7.1f} s  {text}")
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
    from .privacy import PrivacyError, erase, mask_value
    from .runner import RunError

    by = next(k for k in ("customer", "record", "email", "phone") if getattr(args, k) is not None)
    value = getattr(args, by)
    try:
        s = erase(by, value, args.config, reports_dir=args.reports, dry_run=args.dry_run,
                  resolve=not args.no_resolve)
    except (PrivacyError, ConfigError, ContractError, RunError) as exc:
        print(f"omni erase: {exc}", file=sys.stderr)
        return 2
    if not s["dry_run"]:  # the prepared store held the person too: it is rebuilt without them on next use
        from .config import load_config

        store_path = load_config(args.config).store_path
        if store_path is not None and store_path.exists():
            store_path.unlink()
            print(f"  prepared store {store_path} deleted (rebuilt without them by the next omni run)")
    verb = "would remove" if s["dry_run"] else "removed"
    who = {"customer": f"Customer {value}", "record": f"Identity record {value}",
           "email": f"E-mail {mask_value(value, 'email')}", "phone": f"Phone {mask_value(value, 'phone')}"}[by]
    if by != "customer" and not s["customer_found"]:
        who += " (no customer is linked to it: only identity records)"
    print(f"{'DRY RUN: nothing changed. ' if s['dry_run'] else ''}{who}: {verb}")
    for table, n in s["rows_removed"].items():
        print(f"  {table:<12} {n:>8,} rows")
    print(f"  identity records: {s['identity_records']:,} "
          f"({s['identity_records_via_resolution']:,} found by identity resolution)")
    print(f"  report files with their ids {'to redact' if s['dry_run'] else 'redacted'}: "
          f"{s['report_files_redacted']:,}")
    if s.get("lookalike_records"):
        look = s["lookalike_records"]
        ids = ", ".join(f"{r} ({what})" for r, what in list(look.items())[:10])
        print(f"  NOT erased: {len(look)} identity record(s) share something with this person's records "
              f"but nothing links them to the person: {ids}. If they are theirs, erase them too: "
              "omni erase --record ID (or --email / --phone)")
    if not s["dry_run"]:
        print(f"Logged (id pseudonymised) in {s['log']}")
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
              omni prepare             # build the store (omni run does it when needed)
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
    v.add_argument("--config", default=None, help="config file (default: $OMNI_CONFIG, else ./omni.yaml, else the project's omni.yaml)")
    v.set_defaults(func=_cmd_validate)

    pr = sub.add_parser(
        "prepare", formatter_class=_FMT, help="build the prepared store every analysis reads",
        description=_dedent("""
            Read the configured tables once, check them against the contract (the full
            problem list, as omni validate), resolve identity (channel records ->
            unified customers), map every row to its customer, apply the consent rule,
            pseudonymise e-mails, phones and names, and write one DuckDB file (default
            data/store/omni_store.duckdb beside the config; `store: {path: ...}` in
            omni.yaml). The new store replaces the old one in one step; a failed
            prepare leaves the previous store intact. omni run does this first by
            itself whenever the config, an input file or the key changed.
            Exit 0 = store ready, 1 = the data does not meet the contract, 2 = config.
        """),
        epilog="example: omni prepare --config /data/shop/omni.yaml",
    )
    pr.add_argument("--config", default=None, help="config file (default: $OMNI_CONFIG, else ./omni.yaml, else the project's omni.yaml)")
    pr.add_argument("--force", action="store_true", help="rebuild even when nothing changed")
    pr.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    pr.set_defaults(func=_cmd_prepare)

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
    r.add_argument("--config", default=None, help="config file (default: $OMNI_CONFIG, else ./omni.yaml, else the project's omni.yaml)")
    r.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="override a notebook parameter; value parsed as YAML; repeatable")
    r.add_argument("--out", default=None, metavar="DIR",
                   help="reports folder (default: reports/ beside the config)")
    r.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                   help="notebooks run at the same time (default: $OMNI_JOBS, else 2 on a machine with "
                        "2+ cores); each is its own kernel, so memory adds up: use 1 when memory is tight")
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
            * Reports: edited by structure (JSON by value, CSV and HTML tables by row,
              executed notebooks by cell output, HTML reports made again from them):
              their rows go, their ids, e-mails, phones, names and pseudonyms become
              [erased]; a bare number of theirs ("12") is only matched in id fields, so
              no one else's figure changes; every file still parses. Aggregate figures
              stay (they are no one's personal data).
            * By --record, --email or --phone: the customer those records lead to, or
              the records alone when nothing links them to a customer. Records that
              share an e-mail or phone but are not linked are listed, not erased.
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
              omni erase --email budi@gmail.com          # also records no order or link ties to a customer
        """),
    )
    who = e.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer", metavar="ID", help="the customer id (customers.customer_id)")
    who.add_argument("--record", metavar="ID", help="an identity record id (identities.record_id)")
    who.add_argument("--email", metavar="ADDRESS", help="an e-mail address (any case or spacing)")
    who.add_argument("--phone", metavar="NUMBER", help="a phone number (+62 / 0 spellings alike)")
    e.add_argument("--config", default=None, help="config file (default: $OMNI_CONFIG, else ./omni.yaml, else the project's omni.yaml)")
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
    x.add_argument("--config", default=None, help="config file (default: $OMNI_CONFIG, else ./omni.yaml, else the project's omni.yaml)")
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
