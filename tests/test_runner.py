"""The report runner: atomic run folders, HTML without code, key figures, failures."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from omni_lib import runner

CODE_MARKER = "very_secret_code_marker"


def _nb(path: Path, cells: list[str], params: str = "scale = 1") -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), p]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def project(tmp_path: Path, monkeypatch) -> Path:
    """A project folder with its own omni.yaml and notebooks/, as the working directory.

    The test notebooks declare no data (no ``omni.requires`` metadata), so no store is built.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OMNI_CONFIG", raising=False)
    (tmp_path / "omni.yaml").write_text("mode: sample\ndata: {format: csv, root: data, tables: {orders: o.csv}}\n")
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    _nb(nbs / "00_good.ipynb", [
        f"{CODE_MARKER} = 21 * scale",
        "from omni_lib.report import key_figures\n"
        f"key_figures({{'answer': {CODE_MARKER} * 2}}, headline='The answer is known')",
        "print('visible output', scale)",
    ])
    _nb(nbs / "01_also_good.ipynb", ["from pathlib import Path",
        "if output_dir:\n    Path(output_dir, 'table.csv').write_text('a,b\\n1,2\\n')"],
        params="x = 1\noutput_dir = None")
    return tmp_path


def _hash_tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "omni_lib.cli", "run", "-q", *args],
                          cwd=project, capture_output=True, text=True, timeout=600)


def test_successful_run_publishes_html_json_index_and_latest(project: Path):
    res = runner.run(overrides={"scale": 2}, progress=False)
    assert res.ok
    d = project / "reports" / res.run_id
    assert d.is_dir() and not list((project / "reports").glob(".tmp-*"))
    for stem in ("00_good", "01_also_good"):
        assert (d / f"{stem}.html").exists() and (d / f"{stem}.ipynb").exists()
    html = (d / "00_good.html").read_text()
    assert CODE_MARKER not in html            # code cells hidden
    assert "visible output 2" in html         # outputs kept, override applied
    figures = json.loads((d / "00_good.json").read_text())
    assert figures["status"] == "ok"
    assert figures["key_figures"] == {"answer": 84}
    assert figures["headline"] == "The answer is known"
    index = (d / "index.html").read_text()
    assert "00_good.html" in index and "01_also_good.html" in index and "The answer is known" in index
    assert (project / "reports" / "latest").resolve() == d.resolve()
    assert (d / "table.csv").read_text() == "a,b\n1,2\n"   # output_dir injected, moved with the run


def test_failing_notebook_other_reports_written_previous_run_untouched(project: Path):
    first = runner.run(progress=False)
    first_dir = project / "reports" / first.run_id
    before = _hash_tree(first_dir)

    _nb(project / "notebooks" / "02_broken.ipynb",
        ["y = 1", "raise ValueError('planted failure')", "print('never')"])
    proc = _cli(project)
    assert proc.returncode != 0
    assert "02_broken" in proc.stderr and "cell 4" in proc.stderr  # md, params, y=1, raise
    assert "planted failure" in proc.stderr

    runs = sorted(p for p in (project / "reports").iterdir()
                  if p.is_dir() and not p.is_symlink() and p.name != first.run_id)
    assert len(runs) == 1
    second = runs[0]
    assert (second / "00_good.html").exists() and (second / "01_also_good.html").exists()
    kept = nbformat.read(second / "02_broken.ipynb", as_version=4)
    assert any(o.get("ename") == "ValueError" for c in kept.cells for o in c.get("outputs", []))
    status = json.loads((second / "02_broken.json").read_text())
    assert status["status"] == "failed" and status["error"]["cell"] == 4
    assert _hash_tree(first_dir) == before                       # earlier run untouched
    assert (project / "reports" / "latest").resolve() == first_dir.resolve()


def test_interrupted_run_leaves_no_folder(project: Path, monkeypatch):
    calls = []

    def boom(src, out_dir, params, cell_progress=False, record=None, outputs_dir=None):
        calls.append(src)
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "execute_one", boom)
    with pytest.raises(KeyboardInterrupt):
        runner.run(progress=False)
    assert calls
    leftovers = list((project / "reports").iterdir())
    assert leftovers == []


def test_unknown_parameter_and_notebook_are_clear_errors(project: Path):
    proc = _cli(project, "-p", "scael=3")
    assert proc.returncode == 2 and "scael" in proc.stderr
    proc = _cli(project, "99_missing")
    assert proc.returncode == 2 and "99_missing" in proc.stderr and "00_good" in proc.stderr
    assert not (project / "reports").exists()


def test_parse_overrides_types():
    assert runner.parse_overrides(["a=3", "b=0.5", "c=true", "d=M", "e=[1, 2]"]) == {
        "a": 3, "b": 0.5, "c": True, "d": "M", "e": [1, 2]}
    with pytest.raises(runner.RunError):
        runner.parse_overrides(["novalue"])


def test_select_by_prefix(project: Path):
    chosen = runner.resolve_notebooks(["01"], project / "notebooks")
    assert [p.stem for p in chosen] == ["01_also_good"]


def test_help_explains_every_command():
    for cmd in ([], ["sample"], ["validate"], ["run"]):
        out = subprocess.run([sys.executable, "-m", "omni_lib.cli", *cmd, "--help"],
                             capture_output=True, text=True)
        assert out.returncode == 0 and "usage: omni" in out.stdout and len(out.stdout) > 300


def test_missing_config_and_bad_yaml_are_clear_errors(project: Path):
    proc = _cli(project, "--config", "typo.yaml")
    assert proc.returncode == 2 and "typo.yaml" in proc.stderr and "not found" in proc.stderr
    proc = _cli(project, "-p", "scale=[a")
    assert proc.returncode == 2 and "parameter scale" in proc.stderr and "Traceback" not in proc.stderr
    (project / "omni.yaml").write_text("data: {format: excel}\n")
    proc = _cli(project, "--config", "omni.yaml")
    assert proc.returncode == 2 and "omni.yaml" in proc.stderr and "Traceback" not in proc.stderr


def _config_with_params(project: Path, params: str) -> Path:
    """The shipped omni.yaml with its ``params:`` replaced."""
    import re

    text = (Path(__file__).resolve().parents[1] / "omni.yaml").read_text()
    text, n = re.subn(r"(?m)^params:.*$", f"params: {params}", text)
    assert n == 1
    path = project / "omni.yaml"
    path.write_text(text)
    return path


def test_unknown_config_params_are_clear_errors(project: Path):
    cfg = _config_with_params(project, "{sclae: 3}")
    with pytest.raises(runner.RunError, match=r"unknown parameter\(s\) under params: \['sclae'\]"):
        runner.run(config_path=cfg, progress=False)
    cfg = _config_with_params(project, "{01_also_good: {output: 2}}")
    with pytest.raises(runner.RunError, match=r"01_also_good\.output"):
        runner.run(config_path=cfg, progress=False)
    proc = _cli(project, "--config", "omni.yaml")
    assert proc.returncode == 2 and "01_also_good.output" in proc.stderr and "Traceback" not in proc.stderr
    assert not (project / "reports").exists()
    # known names, globally and per notebook, run
    cfg = _config_with_params(project, "{scale: 3, 01_also_good: {x: 2}}")
    res = runner.run(config_path=cfg, progress=False)
    assert res.ok
    assert json.loads((res.run_dir / "00_good.json").read_text())["parameters"]["scale"] == 3
    assert json.loads((res.run_dir / "01_also_good.json").read_text())["parameters"]["x"] == 2


def test_recorded_output_dir_is_the_final_run_folder(project: Path):
    res = runner.run(progress=False)
    rec = json.loads((res.run_dir / "01_also_good.json").read_text())["parameters"]["output_dir"]
    assert Path(rec) == res.run_dir and ".tmp-" not in rec


def test_partial_run_leaves_latest_on_the_complete_run(project: Path):
    full = runner.run(progress=False)
    part = runner.run(notebooks=["00"], progress=False)
    assert part.ok and not part.moved_latest and full.moved_latest
    assert (project / "reports" / "latest").resolve() == full.run_dir.resolve()
    proc = _cli(project, "01")
    assert proc.returncode == 0 and "reports/latest unchanged" in proc.stdout


def test_every_shipped_notebook_declares_config_path_and_its_data():
    """`omni run --config X` reaches a notebook only through its declared `config_path` (papermill
    drops a parameter line it cannot parse, e.g. one with '=' in its comment), and the runner
    skips a notebook only if it says which tables it needs."""
    for nb in runner.discover_notebooks(runner.default_notebooks_dir()):
        declared = runner.declared_parameters(nb)
        assert "config_path" in declared and declared["config_path"] == "None", nb.name
        req = runner.requirements(nb)
        assert "orders" in req["requires"], nb.name
        assert all(t in ("orders", "identities", "touchpoints", "experiments") for t in req["requires"])


def test_parallel_run_publishes_what_a_serial_run_does(project: Path):
    """Two notebooks at a time: the same files, each report listing only its own outputs."""
    _nb(project / "notebooks" / "02_writes_too.ipynb", ["from pathlib import Path",
        "import time; time.sleep(1)",
        "if output_dir:\n    Path(output_dir, 'other.csv').write_text('c\\n3\\n')"],
        params="output_dir = None")
    serial = runner.run(progress=False, jobs=1)
    parallel = runner.run(progress=False, jobs=2)
    assert serial.ok and parallel.ok
    names = lambda d: sorted(p.name for p in d.iterdir() if p.is_file())  # noqa: E731
    assert names(serial.run_dir) == names(parallel.run_dir)
    assert not [p for p in parallel.run_dir.iterdir() if p.is_dir()]   # no per-notebook folders left
    outs = {r.notebook: r.outputs for r in parallel.results}
    assert outs == {r.notebook: r.outputs for r in serial.results}
    assert outs["01_also_good"] == ["table.csv"] and outs["02_writes_too"] == ["other.csv"]
    assert [r.notebook for r in parallel.results] == ["00_good", "01_also_good", "02_writes_too"]
    rec = json.loads((parallel.run_dir / "02_writes_too.json").read_text())["parameters"]["output_dir"]
    assert Path(rec) == parallel.run_dir
