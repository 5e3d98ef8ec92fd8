"""Issue 15's serious cases, with real processes and kernels:

1. erasing a customer with a numeric id (``12``) edits the outputs by structure: every
   file still parses, execution counts and other people's figures stay;
2. raw e-mails never reach a run's files through error examples, and erasure by e-mail
   removes them from outputs an older version wrote;
4. two runs at once (different or the same reports folder) do not disturb each other;
   kernels' sockets are not left in the notebooks folder;
5. SIGINT and 6. SIGTERM stop a run: exit 130 / 143, kernel ended, no ``.tmp-*`` left,
   ``latest`` unchanged; a stale ``.tmp-*`` from a killed run is removed by the next run.
"""
from __future__ import annotations

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from omni_lib import privacy

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
ENV.pop("OMNI_CONFIG", None)
ENV.pop("OMNI_PSEUDONYM_KEY", None)


def _nb(path: Path, params: str, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), p] + [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def _omni(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omni_lib.cli", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- serious 1
@pytest.fixture(scope="module")
def numeric_shop(tmp_path_factory) -> Path:
    """300 customers with ids 1..300 (C0000012 -> 12), CSV, and one report notebook whose
    outputs hold customer 12 next to figures that are also 12."""
    from omni_lib.sample import generate, true_keyed

    base = tmp_path_factory.mktemp("numeric")
    raw = base / "raw"
    generate(out_dir=raw, n_customers=300, progress=False)
    (base / "data").mkdir()
    for name, df in true_keyed(raw).items():   # CRM-keyed: rows carry the (planted) customer ids
        f = Path(f"{name}.parquet")
        for c in ("customer_id",):
            if c in df:
                df[c] = df[c].astype("str").str.replace(r"^C0*", "", regex=True).where(df[c].notna())
        df.to_csv(base / "data" / f"{f.stem}.csv", index=False)
    shutil.copy(raw / "meta.json", base / "data")
    tables = "".join(f"    {t}: {{path: {t}.csv}}\n" for t in ("identities", "customers", "orders", "touchpoints"))
    (base / "omni.yaml").write_text(f"mode: sample\ndata:\n  format: csv\n  root: data\n  tables:\n{tables}"
                                    "timezone: Asia/Jakarta\n")
    (base / "notebooks").mkdir()
    cells = [
        "import pandas as pd\nfrom omni_lib.io import load\nfrom omni_lib.report import key_figures\n"
        "ds = load(config_path, tables=['customers', 'orders'])",
        "top = ds.orders.groupby('customer_id').size().rename('orders').reset_index()\n"
        "top = top[top.customer_id.isin(['11', '12', '13'])].assign(months=12)",
        "key_figures({'customers': 12, 'share': 0.12, 'top_customer_id': '12'}, headline='12 of 300 customers')",
        "top",                                                   # an HTML table with customer 12's row
        "print('customers 11, 12 and 13 over 12 months')",
        "pd.DataFrame({'customer_id': ['12', '13'], 'score': [0.5, 12]}).to_csv(f'{output_dir}/scores.csv', index=False)",
    ] + [f"x{i} = {i}" for i in range(8)]                        # execution counts beyond 12
    _nb(base / "notebooks" / "00_numbers.ipynb", 'config_path = "../omni.yaml"\noutput_dir = "."', cells)
    return base


def test_serious_1_numeric_id_erasure_edits_structure_only(numeric_shop):
    res = _omni(numeric_shop, "run", "-q")
    assert res.returncode == 0, res.stderr[-2000:]
    run = next(p for p in (numeric_shop / "reports").iterdir() if p.is_dir() and not p.is_symlink())
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    executed = json.loads(before["00_numbers.ipynb"])
    assert 12 in [c.get("execution_count") for c in executed["cells"]]         # the trap the old code fell in
    assert b"<th>12</th>" in before["00_numbers.ipynb"] or b"<td>12</td>" in before["00_numbers.ipynb"]
    assert "12,0.5" in before["scores.csv"].decode()

    res = _omni(numeric_shop, "erase", "--customer", "12")
    assert res.returncode == 0, res.stderr[-2000:]
    for p in run.iterdir():                                                      # every file still parses
        if p.suffix in (".json", ".ipynb"):
            json.loads(p.read_text())
        if p.suffix == ".ipynb":
            nbformat.validate(nbformat.read(p, as_version=4))
    nb = json.loads((run / "00_numbers.ipynb").read_text())
    assert 12 in [c.get("execution_count") for c in nb["cells"]]
    fig = json.loads((run / "00_numbers.json").read_text())
    assert fig["key_figures"]["customers"] == 12 and fig["key_figures"]["share"] == 0.12
    assert fig["key_figures"]["top_customer_id"] == privacy.ERASED
    assert fig["headline"] == "12 of 300 customers"                             # a figure, not their id
    scores = pd.read_csv(run / "scores.csv", dtype=str)
    assert scores.to_dict("records") == [{"customer_id": "13", "score": "12.0"}]  # their row gone, 13's 12 kept
    table = next(o["data"]["text/html"] for c in nb["cells"] for o in c.get("outputs", [])
                 if "text/html" in o.get("data", {}) and "months" in "".join(o["data"]["text/html"]))
    from bs4 import BeautifulSoup

    body = BeautifulSoup("".join(table), "html.parser").find("tbody")
    rows = [[c.get_text(strip=True) for c in tr.find_all(["th", "td"])] for tr in body.find_all("tr")]
    assert [r[1] for r in rows] == ["11", "13"] and {r[3] for r in rows} == {"12"}   # (index, id, orders, months)
    html = (run / "00_numbers.html").read_text()
    assert "customers 11, 12 and 13 over 12 months" in html                      # free text: a bare 12 is no one's
    assert (run / "index.html").read_bytes() == before["index.html"]              # nothing of theirs there
    assert not (pd.read_csv(numeric_shop / "data" / "customers.csv", dtype=str)["customer_id"] == "12").any()


# --------------------------------------------------------------------------- serious 2
def test_serious_2_no_raw_email_in_a_run_and_erase_by_email(numeric_shop, tmp_path):
    shop = tmp_path / "shop"
    shutil.copytree(numeric_shop, shop, ignore=shutil.ignore_patterns("reports", "privacy"))
    ids = pd.read_csv(shop / "data" / "identities.csv", dtype=str, keep_default_na=False)
    with_mail = ids.index[ids["email"] != ""][:2].tolist()
    victims = ids.loc[with_mail, "email"].tolist()
    lines = (shop / "data" / "identities.csv").read_text().split("\n")
    for i in with_mail:                                       # delete the `source` field (issue 15)
        parts = lines[i + 1].split(",")
        del parts[1]
        lines[i + 1] = ",".join(parts)
    (shop / "data" / "identities.csv").write_text("\n".join(lines))
    _nb(shop / "notebooks" / "00_numbers.ipynb", 'config_path = "../omni.yaml"',
        ["from omni_lib.io import load\nds = load(config_path)"])
    res = _omni(shop, "validate", "--config", "omni.yaml")
    assert res.returncode == 1 and "fewer fields" in res.stderr
    assert not any(v in res.stderr + res.stdout for v in victims)
    res = _omni(shop, "run", "-q")
    assert res.returncode == 1 and "fewer fields" in res.stderr
    assert not any(v in res.stderr for v in victims)
    hits = privacy.scan_for_pii(shop / "reports")
    assert hits.empty, hits.to_string()

    # outputs an older version wrote, holding the first person's e-mail and someone else's
    (shop / "data" / "identities.csv").write_text(ids.to_csv(index=False))
    other = ids.loc[ids["email"] != ""].iloc[10]["email"]
    old = shop / "reports" / "20250101-000000"
    old.mkdir(parents=True)
    (old / "run.json").write_text(json.dumps({"error": f"e.g. ['{victims[0]}', '{other}']", "n": 12}))
    (old / "index.html").write_text(f"<html><body><p>e.g. {victims[0]} and {other}</p>"
                                    f"<table><tr><th>email</th></tr><tr><td>{victims[0]}</td></tr>"
                                    f"<tr><td>{other}</td></tr></table></body></html>")
    res = _omni(shop, "erase", "--email", victims[0].upper())
    assert res.returncode == 0, res.stderr[-2000:]
    for f in ("run.json", "index.html"):
        text = (old / f).read_text()
        assert victims[0] not in text.lower() and other in text
    json.loads((old / "run.json").read_text())
    assert victims[0] not in (shop / "data" / "identities.csv").read_text()


# --------------------------------------------------------------------------- serious 4, 5, 6
@pytest.fixture()
def slow_project(tmp_path: Path) -> Path:
    """A project of its own (omni.yaml, notebooks/); one notebook that records its kernel's pid and
    sleeps a few seconds. It declares no data, so no store is built."""
    (tmp_path / "omni.yaml").write_text("mode: sample\ndata: {format: csv, root: data, tables: {orders: o.csv}}\n")
    (tmp_path / "notebooks").mkdir()
    _nb(tmp_path / "notebooks" / "00_slow.ipynb", "pid_file = ''\nnap = 0.5",
        ["import os, time\nif pid_file:\n    open(pid_file, 'w').write(str(os.getpid()))"]
        + ["time.sleep(nap)"] * 6)
    return tmp_path


def _published(reports: Path) -> list[str]:
    return sorted(p.name for p in reports.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))


def test_serious_4_concurrent_runs_do_not_disturb_each_other(slow_project):
    def start(out: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "omni_lib.cli", "run", "-q", "-p", "nap=1", "--out", out],
                                cwd=slow_project, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    procs = [start("a")]
    deadline = time.time() + 120                               # the first run holds folder a ...
    while not list((slow_project / "a").glob(".tmp-*")) and time.time() < deadline:
        time.sleep(0.1)
    procs += [start("b"), start("a")]                          # ... while these two start
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-1500:] for o in outs]
    assert len(_published(slow_project / "a")) == 2 and len(_published(slow_project / "b")) == 1
    assert re.search(r"waiting: .* is in use by run \d{8}-\d{6}", outs[2][1])  # the second in a waited, told by whom
    assert sorted(p.name for p in (slow_project / "notebooks").iterdir()) == ["00_slow.ipynb"]
    for folder in ("a", "b"):
        assert not [p for p in (slow_project / folder).iterdir() if p.name.startswith(".")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_serious_5_6_signals_stop_the_run(slow_project, sig, code):
    reports = slow_project / "reports"
    first = subprocess.run([sys.executable, "-m", "omni_lib.cli", "run", "-q", "-p", "nap=0"], cwd=slow_project,
                           env=ENV, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-1500:]
    latest = os.readlink(reports / "latest")
    stale = reports / ".tmp-20200101-000000"                  # what a killed run left behind
    stale.mkdir()
    (stale / "partial.html").write_text("<p>half</p>")
    pid_file = slow_project / "kernel.pid"
    proc = subprocess.Popen([sys.executable, "-m", "omni_lib.cli", "run", "-q", "-p", f"pid_file={pid_file}",
                             "-p", "nap=2"], cwd=slow_project, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert pid_file.exists(), "the kernel never started"
    time.sleep(0.5)
    kernel = int(pid_file.read_text())
    assert not stale.exists()                                 # the run removed the stale folder first
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-1500:]
    assert sig.name in err and "nothing published" in err
    assert os.readlink(reports / "latest") == latest
    assert _published(reports) == [latest]
    assert not [p.name for p in reports.iterdir() if p.name.startswith(".tmp-")]
    for _ in range(50):
        if not _alive(kernel):
            break
        time.sleep(0.1)
    assert not _alive(kernel), "the kernel outlived the run"


# --------------------------------------------------------------------------- records nothing links
def test_unlinked_records_are_listed_then_erased_by_record(numeric_shop, tmp_path):
    """The resolver rightly does not link two records on a name alone (issue 15: 10 of
    2,000 planted people kept such a record); erase says so and erases it by record id."""
    from omni_lib.io import check

    shop = tmp_path / "shop"
    shutil.copytree(numeric_shop, shop, ignore=shutil.ignore_patterns("reports", "privacy"))
    ids = pd.read_csv(shop / "data" / "identities.csv", dtype=str, keep_default_na=False)
    orders = pd.read_csv(shop / "data" / "orders.csv", dtype=str, keep_default_na=False)
    rec = orders.loc[orders["record_id"] != ""].iloc[0]
    name = ids.loc[ids["record_id"] == rec["record_id"], "full_name"].iloc[0]
    extra = ids.iloc[[0]].assign(record_id="R99990001", full_name=name.upper(), email="zz.other@example.org",
                                 phone="", loyalty_id="")
    pd.concat([ids, extra]).to_csv(shop / "data" / "identities.csv", index=False)

    res = _omni(shop, "erase", "--customer", rec["customer_id"])
    assert res.returncode == 0, res.stderr[-2000:]
    assert "NOT erased" in res.stdout and "R99990001 (the name only)" in res.stdout
    assert "R99990001" in (shop / "data" / "identities.csv").read_text()
    n_after_first = len(pd.read_csv(shop / "data" / "identities.csv", dtype=str))

    res = _omni(shop, "erase", "--record", "R99990001")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "no customer is linked to it" in res.stdout
    left = pd.read_csv(shop / "data" / "identities.csv", dtype=str)
    assert "R99990001" not in set(left["record_id"]) and len(left) == n_after_first - 1
    assert check(shop / "omni.yaml") == []
    log = [json.loads(x) for x in (shop / "privacy" / "erasure_log.jsonl").read_text().splitlines()]
    assert [e["by"] for e in log] == ["customer", "record"] and "R99990001" not in json.dumps(log)


# --------------------------------------------------------------------------- weak: failure lines
def test_failure_line_names_the_failing_cell_and_masks_personal_values(tmp_path, monkeypatch):
    """Papermill's index did not count its own error banner: the message named the cell
    before the failing one (a markdown heading). Personal values in the error are masked."""
    from omni_lib import runner

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OMNI_CONFIG", raising=False)
    (tmp_path / "omni.yaml").write_text("mode: sample\ndata: {format: csv, root: data, tables: {orders: o.csv}}\n")
    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("x = 1")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), p, nbformat.v4.new_code_cell("y = 2"),
                nbformat.v4.new_markdown_cell("### Variance reduction (CUPED)"),
                nbformat.v4.new_code_cell("raise ValueError('cannot parse budi.santoso77@gmail.com')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "notebooks" / "00_t.ipynb")
    res = runner.run(progress=False)
    line = res.failed[0].failure_line()
    assert "at cell 5 `raise ValueError(" in line and "CUPED" not in line
    assert "budi.santoso77@gmail.com" not in line and "b***7@gmail.com" in line
    run_json = (res.run_dir / "run.json").read_text()
    assert "budi.santoso77@gmail.com" not in run_json and "b***7@gmail.com" in run_json
    executed = json.loads((res.run_dir / "00_t.ipynb").read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors and "budi.santoso77@gmail.com" not in json.dumps(errors)
