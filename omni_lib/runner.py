"""Run the workbench's notebooks headless and publish HTML reports.

``omni run`` executes notebooks with Papermill, converts each executed notebook
to HTML without code cells (nbconvert ``exclude_input``), writes each notebook's
key figures to ``<notebook>.json`` and an ``index.html`` for the run.

Guarantees (design.md, "Running"):

* the run folder ``reports/<run_id>/`` is built in a hidden temp folder and
  renamed at the end, so it appears whole or not at all; an interrupted run
  leaves no half-written run folder and never touches earlier runs;
* a failing notebook does not stop the others; its executed notebook (with the
  traceback) is kept for inspection, the run exits non-zero and names the
  notebook and the failing cell;
* ``reports/latest`` points at the newest run of all notebooks in which every one passed.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import nbformat
import yaml

from .report import extract_key_figures, format_value, humanise, to_jsonable

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"


class RunError(Exception):
    """A run could not start (unknown notebook, unknown parameter, ...)."""


@dataclass
class NotebookResult:
    notebook: str
    status: str  # "ok" | "failed" | "skipped"
    duration_s: float
    parameters: dict = field(default_factory=dict)
    html: str | None = None
    executed: str | None = None
    headline: str | None = None
    key_figures: dict = field(default_factory=dict)
    error: dict | None = None
    reason: str | None = None  # why a notebook was skipped: what data would enable it
    #: the key figures as the report shows them (money with currency, %, dates, yes/no)
    key_figures_display: dict = field(default_factory=dict)
    #: files this notebook wrote beside its report (CSV tables, ...), names in the run folder
    outputs: list = field(default_factory=list)

    def failure_line(self) -> str:
        e = self.error or {}
        where = f"at cell {e.get('cell')}" if e.get("cell") else "before running any cell"
        src = f" `{e['source']}`" if e.get("source") else ""
        return (
            f"{self.notebook}.ipynb failed {where}{src}: "
            f"{e.get('ename', 'Error')}: {e.get('evalue', '')}".rstrip()
        )


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    results: list[NotebookResult]
    moved_latest: bool = False

    prepare: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Nothing failed (skipped notebooks lacked their data; that is not a failure)."""
        return all(r.status in ("ok", "skipped") for r in self.results)

    @property
    def failed(self) -> list[NotebookResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def skipped(self) -> list[NotebookResult]:
        return [r for r in self.results if r.status == "skipped"]


# --------------------------------------------------------------------------- discovery
def default_notebooks_dir() -> Path:
    """The report notebooks shipped with the package (the project's ``notebooks/``), so
    ``omni run --config /any/folder/omni.yaml`` works from any folder."""
    return Path(__file__).resolve().parents[1] / "notebooks"


def requirements(path: Path) -> dict:
    """What a notebook needs (its metadata ``omni.requires``: contract tables) and the
    sentence shown when they are absent (``omni.enables``)."""
    meta = nbformat.read(path, as_version=4).metadata.get("omni", {})
    return {"requires": list(meta.get("requires", [])), "enables": meta.get("enables", "")}


def discover_notebooks(notebooks_dir: Path) -> list[Path]:
    """All report notebooks (``NN_name.ipynb``) in run order."""
    return sorted(Path(notebooks_dir).glob(NOTEBOOK_GLOB))


def resolve_notebooks(names: Iterable[str] | None, notebooks_dir: Path) -> list[Path]:
    """Map user-given names (path, file name, stem or ``NN`` prefix) to notebooks."""
    available = discover_notebooks(notebooks_dir)
    if not names:
        if not available:
            raise RunError(f"no notebooks matching {NOTEBOOK_GLOB} in {notebooks_dir}")
        return available
    chosen = []
    for name in names:
        p = Path(name)
        if p.suffix == ".ipynb" and p.exists():
            chosen.append(p.resolve())
            continue
        stem = p.name.removesuffix(".ipynb")
        hits = [a for a in available if a.stem == stem or a.stem.split("_", 1)[0] == stem]
        if len(hits) != 1:
            listing = ", ".join(a.stem for a in available) or "(none)"
            raise RunError(f"unknown notebook {name!r}; available: {listing}")
        chosen.append(hits[0])
    return chosen


def declared_parameters(path: Path) -> dict[str, Any]:
    """Parameters declared in a notebook's ``parameters`` cell (name -> default)."""
    import papermill as pm

    return {k: v.get("default") for k, v in pm.inspect_notebook(str(path)).items()}


def parse_overrides(pairs: Iterable[str] | None) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict, values parsed as YAML (so 3, 0.1, true, [a, b] work)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise RunError(f"parameter {pair!r} must look like key=value")
        key, value = pair.split("=", 1)
        key = key.strip()
        if not key.isidentifier():
            raise RunError(f"parameter name {key!r} is not a valid Python name")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError as exc:
            raise RunError(f"parameter {key}: cannot read {value!r} ({str(exc).splitlines()[0]}); "
                           "quote text values, e.g. -p name='a[b'") from None
    return out


def plan_parameters(
    notebooks: list[Path],
    defaults: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None,
    config_path: Path | None,
    output_dir: Path | None = None,
) -> dict[Path, dict[str, Any]]:
    """Parameters each notebook receives: config ``params``, then ``-p`` overrides.

    A notebook only receives the names its ``parameters`` cell declares; an
    override that no chosen notebook declares is an error (a typo would
    otherwise be silently ignored). ``config_path`` and ``output_dir`` (the run
    folder, for tables a notebook publishes beside its report) are injected
    into notebooks that declare them.
    """
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    unknown = set(overrides or {}) - set().union(*[set(d) for d in declared.values()])
    if unknown:
        raise RunError(
            f"unknown parameter(s) {sorted(unknown)}: no chosen notebook declares them "
            f"(declared: {sorted(set().union(*[set(d) for d in declared.values()]))})"
        )
    _check_override_types(declared, overrides or {})
    plan = {}
    for nb, names in declared.items():
        params: dict[str, Any] = {}
        per_nb = {}
        for k, v in (defaults or {}).items():
            if isinstance(v, Mapping) and k in (nb.stem, nb.stem.split("_", 1)[0]):
                per_nb = dict(v)  # params: {04_segmentation: {k: 6}}
            elif k in names:
                params[k] = v
        params.update({k: v for k, v in per_nb.items() if k in names})
        params.update({k: v for k, v in (overrides or {}).items() if k in names})
        if config_path is not None and "config_path" in names:
            params["config_path"] = str(config_path)
        if output_dir is not None and "output_dir" in names:
            params["output_dir"] = str(output_dir)
        plan[nb] = params
    return plan


def _check_override_types(declared: Mapping[Path, Mapping[str, Any]], overrides: Mapping[str, Any]) -> None:
    """A ``-p`` value must have the kind of the notebook's default (a number for a number,
    true/false for a flag), so ``-p churn_days=abc`` fails here naming the parameter,
    not deep inside the notebook."""
    import ast

    kinds = {bool: "true or false", int: "a number", float: "a number", list: "a list, e.g. [a, b]"}
    for key, value in overrides.items():
        for nb, names in declared.items():
            if key not in names:
                continue
            try:
                default = ast.literal_eval(str(names[key]))
            except (ValueError, SyntaxError):
                continue
            want = type(default)
            if want is bool:
                ok = isinstance(value, bool)
            elif want in (int, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            elif want is list:
                ok = isinstance(value, list)
            else:
                continue
            if not ok:
                raise RunError(f"parameter {key}: expected {kinds[want]} (the default in {nb.stem} is "
                               f"{names[key]}), got {value!r}")


def check_config_params(defaults: Mapping[str, Any] | None, notebooks: list[Path], source: str) -> None:
    """A config ``params`` name that no notebook declares is an error, as for ``-p``.

    Checked against every notebook in the folder (a config serves all of them), and per
    notebook for ``params: {04_segmentation: {...}}`` sections.
    """
    declared = {nb: set(declared_parameters(nb)) for nb in notebooks}
    known = set().union(*declared.values()) if declared else set()
    bad = []
    for k, v in (defaults or {}).items():
        section = [nb for nb in notebooks if k in (nb.stem, nb.stem.split("_", 1)[0])]
        if isinstance(v, Mapping) and section:
            bad += [f"{k}.{name}" for name in v if name not in declared[section[0]]]
        elif k not in known:
            bad.append(k)
    if bad:
        raise RunError(f"{source}: unknown parameter(s) under params: {sorted(bad)}; no notebook declares them "
                       f"(declared: {sorted(known)})")


# --------------------------------------------------------------------------- execution
def _mask_tracebacks(nb) -> bool:
    """E-mail addresses and phone numbers in error outputs masked (an exception message
    may quote a raw value); True when something changed."""
    from .privacy import mask_text

    changed = False
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("output_type") != "error":
                continue
            new_tb = [mask_text(t) for t in o.get("traceback", [])]
            new_ev = mask_text(o.get("evalue", ""))
            if new_tb != o.get("traceback", []) or new_ev != o.get("evalue", ""):
                o["traceback"], o["evalue"] = new_tb, new_ev
                changed = True
    return changed


_ADDED_TAGS = ("injected-parameters", "papermill-error-cell-tag")


def _failed_cell_index(nb, fallback: int | None) -> int | None:
    """Index (in the executed notebook) of the cell that failed: the code cell with an
    error output, else (the kernel died) the first code cell papermill did not complete.
    Papermill's own index does not count the error banner it adds at the top, so it
    pointed one cell early (often at a markdown heading)."""
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code" and any(o.get("output_type") == "error" for o in c.get("outputs", [])):
            return i
    for i, c in enumerate(nb.cells):
        status = c.get("metadata", {}).get("papermill", {}).get("status")
        if c.cell_type == "code" and status in ("running", "pending") and not _is_added(c):
            return i
    return fallback


def _is_added(cell) -> bool:
    return any(t in cell.get("metadata", {}).get("tags", []) for t in _ADDED_TAGS)


def _failing_cell(nb, cell_index: int | None) -> tuple[int | None, str]:
    """1-based position of a cell in the *original* notebook and its first line."""
    if cell_index is None or cell_index >= len(nb.cells):
        return None, ""
    injected = sum(1 for c in nb.cells[:cell_index] if _is_added(c))
    src = next((ln.strip() for ln in nb.cells[cell_index].source.splitlines() if ln.strip()), "")
    return cell_index - injected + 1, src[:120]


def to_html(nb, include_code: bool = False, outputs: Iterable[str] = (), index_link: str | None = "index.html") -> str:
    """Executed notebook -> standalone HTML; code cells hidden unless asked.

    The page is then made readable on its own (:func:`postprocess_html`): a table of
    contents, a link back to the run's index, links to the notebook's output files,
    each figure's title as its alt text, tables that fit the page.
    """
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        exclude_input=not include_code,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    import logging

    logging.getLogger("traitlets").setLevel(logging.ERROR)  # "Alternative text is missing": filled in below
    body, _ = exporter.from_notebook_node(nb)
    return postprocess_html(body, image_alts(nb), outputs=outputs, index_link=index_link)


# --------------------------------------------------------------------------- HTML post-processing
REPORT_CSS = """
body.jp-Notebook, body{max-width:1280px;margin:0 auto;padding:0 1.5rem 3rem;box-sizing:border-box}
.omni-nav{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;margin:1rem 0 1.5rem;background:#fafafa;
  font-family:system-ui,sans-serif;font-size:14px}
.omni-nav .omni-toc{margin:.3rem 0 .2rem 1.2rem;padding:0;columns:2}
.omni-nav ul.omni-toc{list-style:none;margin-left:0}
.omni-nav li{margin:.1rem 0;break-inside:avoid}
.omni-nav ul{margin:0 0 0 1rem;padding:0;list-style:circle}
.omni-nav .omni-files a{margin-right:.8rem}
.omni-period{border-left:4px solid #0072B2;background:#f3f8fc;padding:.4rem .8rem;margin:.6rem 0 1rem}
.omni-table-wrap{max-width:100%;overflow-x:auto}
.jp-RenderedHTMLCommon table{font-size:13px;table-layout:auto}
.jp-RenderedHTMLCommon th{white-space:normal;max-width:14rem}
.jp-RenderedHTMLCommon td{max-width:22rem;overflow-wrap:break-word}
.jp-RenderedHTMLCommon caption{caption-side:bottom;text-align:left;color:#555;font-size:12px;padding-top:.3rem}
img{max-width:100%;height:auto}
"""


def image_alts(nb) -> dict[str, str]:
    """PNG data -> alt text, from the ``alt`` metadata ``report.use_style`` gives each figure."""
    alts = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "image/png" not in data:
                continue
            meta = out.get("metadata", {})
            alt = (meta.get("image/png") or {}).get("alt") or meta.get("alt")
            if alt:
                alts[str(data["image/png"]).strip()] = str(alt)
    return alts


def postprocess_html(body: str, alts: Mapping[str, str] | None = None, *, outputs: Iterable[str] = (),
                     index_link: str | None = "index.html") -> str:
    """Navigation and accessibility for a report page (plain HTML in, HTML out).

    Adds, after the first heading: a link back to the run's index, links to the report's
    output files and a table of contents of its sections (h2/h3, linking the ids nbconvert
    gives headings); sets each image's alt text to its figure's title (``alts``: PNG
    base64 data -> text; images without one are called "figure N" of the report); wraps
    tables so a wide one scrolls inside the page instead of widening it.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(body, features="html.parser")
    alts = dict(alts or {})
    title_tag = soup.find("h1")
    title = title_tag.get_text(" ", strip=True).rstrip("¶").strip() if title_tag else "report"
    for n, img in enumerate(soup.find_all("img"), start=1):
        src = img.get("src", "")
        data = src.split("base64,", 1)[1].strip() if "base64," in src else None
        alt = alts.get(data) if data else None
        if not alt:
            current = img.get("alt", "")
            alt = current if current and not current.startswith("No description") else f"figure {n} of {title}"
        img["alt"] = alt
    for tbl in soup.find_all("table"):
        if tbl.parent is not None and "omni-table-wrap" in (tbl.parent.get("class") or []):
            continue
        wrap = soup.new_tag("div", attrs={"class": "omni-table-wrap"})
        tbl.wrap(wrap)
    style = soup.new_tag("style")
    style.string = REPORT_CSS
    (soup.head or soup).append(style)
    if soup.title is not None:
        soup.title.string = title
    nav = soup.new_tag("nav", attrs={"class": "omni-nav", "aria-label": "report navigation"})
    top = soup.new_tag("p")
    if index_link:
        back = soup.new_tag("a", href=index_link, attrs={"class": "omni-back"})
        back.string = "← all reports of this run"
        top.append(back)
    files = [f for f in outputs]
    if files:
        span = soup.new_tag("span", attrs={"class": "omni-files"})
        span.append(" · files of this report: " if index_link else "Files of this report: ")
        for f in files:
            a = soup.new_tag("a", href=f)
            a.string = f
            span.append(a)
        top.append(span)
    nav.append(top)
    heads = [h for h in soup.find_all(["h2", "h3"]) if h.get("id")]
    import re as _re

    used = set()
    for h in heads:  # plain ids (nbconvert keeps quotes and "%22" in them), unique, anchors kept in step
        old_id = h["id"]
        new_id = _re.sub(r"[^A-Za-z0-9]+", "-", h.get_text(" ", strip=True).rstrip("¶")).strip("-").lower() or "section"
        base, k = new_id, 2
        while new_id in used:
            new_id, k = f"{base}-{k}", k + 1
        used.add(new_id)
        h["id"] = new_id
        for a in h.find_all("a", href=f"#{old_id}"):
            a["href"] = f"#{new_id}"
    if heads:
        label = soup.new_tag("b")
        label.string = "Contents"
        nav.append(label)
        numbered = any(_re.match(r"\s*\d+[.)]", h.get_text(" ", strip=True)) for h in heads)
        ol = soup.new_tag("ul" if numbered else "ol", attrs={"class": "omni-toc"})  # "1. ..." headings: no 2nd number
        last_li = None
        for h in heads:
            li = soup.new_tag("li")
            a = soup.new_tag("a", href=f"#{h['id']}")
            a.string = h.get_text(" ", strip=True).rstrip("¶").strip()
            li.append(a)
            if h.name == "h3" and last_li is not None:  # a subsection: nested under its section
                sub = last_li.find("ul") or last_li.append(soup.new_tag("ul")) or last_li.find("ul")
                sub.append(li)
            else:
                ol.append(li)
                last_li = li
        nav.append(ol)
    if title_tag is not None:
        # after the intro paragraph(s) that follow the title, i.e. at the end of the title's cell
        cell = title_tag.find_parent(class_="jp-Cell") or title_tag
        cell.insert_after(nav)
    elif soup.body is not None:
        soup.body.insert(0, nav)
    else:
        soup.insert(0, nav)
    return str(soup)


def move_stderr_to_log(nb, log_path: Path, stem: str) -> int:
    """Take library warnings and notices (stderr streams) out of the report, into the run log.

    Returns the number of stderr outputs moved. Errors (tracebacks) stay in the report.
    """
    moved = []
    for i, cell in enumerate(nb.cells, start=1):
        keep = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = "".join(out.get("text", ""))
                moved.append(f"[{stem} cell {i}] " + text.rstrip().replace("\n", "\n    "))
            else:
                keep.append(out)
        if "outputs" in cell:
            cell["outputs"] = keep
    if moved:
        with _LOG_LOCK, open(log_path, "a", encoding="utf-8") as fh:   # notebooks may end at once
            fh.write("\n".join(moved) + "\n")
    return len(moved)


import threading as _threading  # noqa: E402

_LOG_LOCK = _threading.Lock()


#: kernel managers started by this process and not yet shut down (ended on interrupt)
_LIVE_KERNELS: list = []
#: the current run's folder for kernels' connection files and IPC sockets
_RUNTIME_DIR: list[Path] = []


def _kernel_manager_class(runtime_dir: Path | None = None):
    """Kernel manager on local IPC sockets: the kernel is only reached from this machine,
    and ipykernel's "running over TCP without encryption" warning stays out of the output.

    Connection file and sockets live in ``runtime_dir`` (the run's own temporary folder),
    named per kernel: without it the sockets are ``kernel-ipc-N`` in the notebook's folder,
    where two runs at once connect to each other's kernels ("Invalid Signature", "Kernel
    didn't respond"). Started kernels are tracked so an interrupted run can end them.
    """
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    folder = runtime_dir or (_RUNTIME_DIR[-1] if _RUNTIME_DIR else None)

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if folder is not None:
                base = Path(folder) / f"kernel-{uuid.uuid4().hex[:12]}"
                self.connection_file = str(base) + ".json"
                self.ip = str(base) + "-ipc"

        async def start_kernel(self, *args, **kwargs):
            _LIVE_KERNELS.append(self)
            return await AsyncKernelManager.start_kernel(self, *args, **kwargs)

        async def shutdown_kernel(self, *args, **kwargs):
            try:
                return await AsyncKernelManager.shutdown_kernel(self, *args, **kwargs)
            finally:
                if self in _LIVE_KERNELS:
                    _LIVE_KERNELS.remove(self)

    return IPCKernelManager


def _end_kernels() -> int:
    """Kill every kernel this process started and did not shut down (its whole process
    group: kernels run in a session of their own); returns how many."""
    import signal as _signal

    n = 0
    for km in list(_LIVE_KERNELS):
        proc = getattr(getattr(km, "provisioner", None), "process", None)
        pid = getattr(proc, "pid", None)
        if pid:
            try:
                os.killpg(pid, _signal.SIGKILL)
                n += 1
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, _signal.SIGKILL)
                    n += 1
                except OSError:
                    pass
            try:
                proc.wait(timeout=5) if hasattr(proc, "wait") else None
            except Exception:
                pass
        _LIVE_KERNELS.remove(km)
    return n


def execute_one(src: Path, out_dir: Path, params: dict, cell_progress: bool = False,
                record: dict | None = None, outputs_dir: Path | None = None) -> NotebookResult:
    """Execute one notebook into ``out_dir``; never raises for notebook errors.

    ``record``: the parameters as written to ``<notebook>.json`` (default ``params``; the
    runner passes the final run folder instead of the temporary one it executes in).
    ``outputs_dir``: the notebook's own folder for its output files (parallel runs); they are
    moved into ``out_dir`` afterwards and listed as this report's outputs.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    stem = src.stem
    executed = out_dir / f"{stem}.ipynb"
    before = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else set()
    t0 = time.perf_counter()
    error = None
    try:
        pm.execute_notebook(
            str(src),
            str(executed),
            parameters=params,
            kernel_name="python3",
            progress_bar=cell_progress,
            cwd=str(src.parent),
            log_output=False,
            kernel_manager_class=_kernel_manager_class(),
        )
    except PapermillExecutionError as exc:
        error = {"ename": exc.ename, "evalue": str(exc.evalue), "cell_index": exc.cell_index}
    except Exception as exc:  # kernel died, bad notebook file, ...
        error = {"ename": type(exc).__name__, "evalue": str(exc), "cell_index": None}
    duration = time.perf_counter() - t0
    own_outputs = None
    if outputs_dir is not None and Path(outputs_dir).is_dir():
        own_outputs = []
        for f in sorted(Path(outputs_dir).iterdir()):
            if f.is_file() and not f.name.startswith("."):
                os.replace(f, out_dir / f.name)
                own_outputs.append(f.name)
        shutil.rmtree(outputs_dir, ignore_errors=True)

    result = NotebookResult(notebook=stem, status="ok" if error is None else "failed",
                            duration_s=round(duration, 2),
                            parameters=to_jsonable(params if record is None else record))
    nb = nbformat.read(executed, as_version=4) if executed.exists() else None
    if nb is not None and error is not None and _mask_tracebacks(nb):
        nbformat.write(nb, executed)
    if nb is not None:
        nb.metadata["title"] = stem.replace("_", " ")
        figures = extract_key_figures(nb) or {}
        result.headline = figures.get("headline")
        result.key_figures = figures.get("figures", {})
        result.key_figures_display = figures.get("display") or {
            k: format_value(k, v) for k, v in result.key_figures.items()}
        result.outputs = own_outputs if own_outputs is not None else sorted(
            p.name for p in out_dir.iterdir()
            if p.name not in before and p.is_file() and not p.name.startswith(".")
            and p.name not in (executed.name, "run.log"))
        move_stderr_to_log(nb, out_dir / "run.log", stem)  # the executed .ipynb keeps them, for inspection
        files = result.outputs + [f"{stem}.json", executed.name]
        (out_dir / f"{stem}.html").write_text(to_html(nb, include_code=error is not None, outputs=files),
                                              encoding="utf-8")
        result.html = f"{stem}.html"
        result.executed = executed.name
    if error is not None:
        index = error.pop("cell_index")
        if nb is not None:
            index = _failed_cell_index(nb, index)
        cell, source = _failing_cell(nb, index) if nb is not None else (None, "")
        from .privacy import mask_text

        error.update(cell=cell, source=mask_text(source), evalue=mask_text(error.get("evalue", "")))
        if error["ename"] == "DeadKernelError":
            error["evalue"] = (error["evalue"] + " (the kernel died while running this cell: out of memory? "
                               "try a smaller sample or fewer parallel runs)").strip()
        result.error = error
    (out_dir / f"{stem}.json").write_text(
        json.dumps(asdict(result), indent=2, ensure_ascii=False), encoding="utf-8")
    return result


# --------------------------------------------------------------------------- the store step
def _prepare_store(cfg, progress: bool) -> tuple[dict, str | None]:
    """Build the store when the config or an input changed; a contract problem does not
    stop the run: the data-health report shows it and the others say why they did not run."""
    from .schema import ContractError
    from .store import prepare

    try:
        return prepare(cfg, progress=progress), None
    except ContractError as exc:
        return {}, (f"the data does not meet the contract ({len(exc.problems)} problem(s)); the store was not "
                    "rebuilt. See the data-health report or run `omni validate`")


def _not_runnable(nb: Path, params: dict, cfg, prep: dict, prep_error: str | None) -> NotebookResult | None:
    """A result for a notebook that cannot run (absent data, or no store), else None."""
    req = requirements(nb)
    missing = [t for t in req["requires"] if t not in cfg.tables]
    if missing:
        why = (f"needs the {' and '.join(missing)} table{'s' if len(missing) > 1 else ''}, which the data "
               f"does not have")
        if req["enables"]:
            why += f"; {req['enables']}"
        return NotebookResult(notebook=nb.stem, status="skipped", duration_s=0.0,
                              parameters=to_jsonable(params), reason=why)
    if prep_error is not None and not req.get("raw", False) and nb.stem.split("_", 1)[0] != "00":
        return NotebookResult(notebook=nb.stem, status="failed", duration_s=0.0, parameters=to_jsonable(params),
                              error={"ename": "ContractError", "evalue": prep_error, "cell": None, "source": ""})
    return None


# --------------------------------------------------------------------------- index page
def _run_history(reports_dir: Path, exclude: str | None = None, limit: int = 30) -> list[dict]:
    """Earlier runs in ``reports_dir`` (newest first): run id, start, status, notebooks."""
    runs = []
    for rj in Path(reports_dir).glob("*/run.json"):
        d = rj.parent
        if d.name.startswith(".") or d.name == "latest" or d.is_symlink() or d.name == exclude:
            continue
        try:
            info = json.loads(rj.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        nbs = info.get("notebooks", [])
        runs.append({"run_id": d.name, "started": info.get("started", ""), "ok": bool(info.get("ok")),
                     "notebooks": len(nbs), "failed": sum(n.get("status") == "failed" for n in nbs)})
    runs.sort(key=lambda r: (r["started"], r["run_id"]), reverse=True)
    return runs[:limit]


def _when(iso: str) -> str:
    """``2026-12-03T12:48:00+07:00`` -> ``3 Dec 2026 12:48``."""
    from .report import date

    try:
        return date(iso, with_time=True)
    except (ValueError, TypeError):
        return str(iso)


def _index_html(run_id: str, results: list[NotebookResult], meta: dict, history: list[dict] | None = None) -> str:
    rows = []
    for r in results:
        words = humanise(r.notebook.split("_", 1)[-1])
        name = html.escape(words[:1].upper() + words[1:])
        title = f"<b>{name}</b><br><small>{html.escape(r.notebook)}</small>"
        link = f"<a href='{html.escape(r.html)}'>{title}</a>" if r.html else title
        badge = {"ok": "<span class='ok'>ok</span>", "skipped": "<span class='skip'>skipped</span>"}.get(
            r.status, "<span class='bad'>failed</span>")
        shown = r.key_figures_display or {k: format_value(k, v) for k, v in r.key_figures.items()}
        figs = "".join(
            f"<li>{html.escape(humanise(k))}: <b>{html.escape(str(v))}</b></li>"
            for k, v in list(shown.items())[:6]
        )
        detail = html.escape(r.headline or "")
        if r.status == "skipped":
            detail = f"<span class='skip'>Not run: {html.escape(r.reason or '')}.</span>"
        if r.error:
            detail = f"<span class='bad'>{html.escape(r.failure_line())}</span>"
        files = [f for f in (r.outputs or [])] + [f"{r.notebook}.json"] + ([r.executed] if r.executed else [])
        file_links = " ".join(f"<a href='{html.escape(f)}'>{html.escape(f)}</a>" for f in files)
        rows.append(
            f"<tr><td>{link}</td><td>{badge}</td><td>{r.duration_s:.1f} s</td>"
            f"<td>{detail}<ul>{figs}</ul><small>files: {file_links}</small></td></tr>"
        )
    labels = {"run_id": "run", "started": "started", "finished": "finished", "config": "configuration",
              "overrides": "parameters given (-p)", "python": "Python"}
    meta_rows = "".join(
        f"<tr><th>{html.escape(labels.get(str(k), humanise(k)))}</th>"
        f"<td>{html.escape(_when(v) if k in ('started', 'finished') else ('none' if v in ('{}', '') else str(v)))}</td></tr>"
        for k, v in meta.items()
    )
    hist_rows = ""
    for h in history or []:
        state = ("<span class='ok'>all passed</span>" if h["ok"]
                 else f"<span class='bad'>{h['failed']} failed</span>")
        hist_rows += (f"<tr><td><a href='../{html.escape(h['run_id'])}/index.html'>{html.escape(h['run_id'])}</a></td>"
                      f"<td>{html.escape(_when(h['started']))}</td><td>{h['notebooks']}</td><td>{state}</td></tr>")
    history_html = (
        "<h2 id='earlier-runs'>Earlier runs</h2><table><thead><tr><th>run</th><th>started</th><th>reports</th>"
        f"<th>status</th></tr></thead><tbody>{hist_rows}</tbody></table>" if hist_rows
        else "<h2 id='earlier-runs'>Earlier runs</h2><p>This is the first run in this reports folder.</p>")
    n_bad = sum(r.status == "failed" for r in results)
    n_skip = sum(r.status == "skipped" for r in results)
    status = "all notebooks passed" if n_bad == 0 else f"{n_bad} notebook(s) failed"
    if n_skip:
        status += f"; {n_skip} skipped for lack of data"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Omni Workbench run {html.escape(run_id)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#222;padding:0 1rem}}
table{{border-collapse:collapse;width:100%;margin:1rem 0}}
td,th{{border-bottom:1px solid #ddd;padding:.5rem;text-align:left;vertical-align:top}}
td a{{overflow-wrap:anywhere}} td:nth-child(3){{white-space:nowrap}}
.ok{{color:#18794e;font-weight:600}} .bad{{color:#c0392b;font-weight:600}} .skip{{color:#8a6d00;font-weight:600}}
ul{{margin:.3rem 0 .3rem 1rem;padding:0}} small{{color:#666}}
</style></head><body>
<h1>Omni Workbench &mdash; run of {html.escape(_when(meta.get("started", run_id)))}</h1>
<p>{html.escape(status)}. Each report opens in the browser; its files (tables for a CRM or campaign tool,
the key figures as JSON, the executed notebook) are linked beside it.</p>
<table><thead><tr><th>report</th><th>status</th><th>time</th><th>headline and key figures</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<h2 id='run-details'>Run details</h2><table>{meta_rows}</table>
{history_html}
<p><small>Library warnings and notices from the notebooks are kept out of the reports; they are in
<a href='run.log'>run.log</a> when there are any.</small></p>
</body></html>
"""



# --------------------------------------------------------------------------- isolation
class RunInterrupted(BaseException):
    """The run was stopped by SIGINT or SIGTERM: kernels ended, nothing published.
    A BaseException (like KeyboardInterrupt), so no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        import signal as _signal

        self.signum = signum
        self.signame = _signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signame}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


LOCK_NAME = ".omni-run.lock"


class ReportsLocked(RunError):
    """Another run (or erasure) holds the reports folder."""


def _lock_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another process"
    return (f"{info.get('purpose', 'run')} {info.get('run_id') or ''} (pid {info.get('pid')}, "
            f"started {info.get('started')})").replace("  ", " ")


from contextlib import contextmanager  # noqa: E402


@contextmanager
def reports_lock(reports_dir: Path, purpose: str = "run", wait: bool = True, announce=None):
    """Hold the reports folder for one run (or erasure) at a time.

    An advisory lock (``flock``) on ``<reports>/.omni-run.lock``: the system releases it
    when the holder exits however it exits, so a killed run never leaves it stuck. A
    second run waits and says which run holds the folder (``wait=False``: raises
    :class:`ReportsLocked` naming it). The holder removes the file when it is done (a
    waiter that wakes on a removed file tries again), so a finished run leaves nothing.
    A folder that does not exist needs no lock.
    """
    import fcntl

    reports_dir = Path(reports_dir)
    if not reports_dir.is_dir():
        yield None
        return
    path = reports_dir / LOCK_NAME
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(path)
            if not wait:
                os.close(fd)
                raise ReportsLocked(f"{reports_dir} is in use by {holder}; try again when it has finished") from None
            if not told:
                (announce or (lambda m: print(m, file=sys.stderr)))(
                    f"waiting: {reports_dir} is in use by {holder} ...")
                told = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file while we waited: lock the new one
    try:
        info = {"purpose": purpose, "pid": os.getpid(),
                "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        _HELD[str(path)] = (fd, info)
        yield path
    finally:
        _HELD.pop(str(path), None)
        try:
            path.unlink(missing_ok=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


#: lock files this process holds: path -> (fd, holder info)
_HELD: dict[str, tuple[int, dict]] = {}


def _note_run_id(reports_dir: Path, run_id: str) -> None:
    """Add the run id to the lock we hold, so a waiting run can name it."""
    held = _HELD.get(str(Path(reports_dir) / LOCK_NAME))
    if held:
        fd, info = held
        info["run_id"] = run_id
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)


def remove_stale_tmp(reports_dir: Path) -> list[str]:
    """Remove ``.tmp-*`` run folders and ``.latest-*`` links a killed run left behind.
    Called with the reports lock held, so no live run owns them."""
    removed = []
    for p in sorted(Path(reports_dir).glob(".tmp-*")) + sorted(Path(reports_dir).glob(".latest-*")):
        if p.is_symlink() or p.is_file():
            p.unlink(missing_ok=True)
        else:
            shutil.rmtree(p, ignore_errors=True)
        removed.append(p.name)
    return removed


@contextmanager
def _stop_on_signals():
    """SIGINT and SIGTERM raise :class:`RunInterrupted` in the main thread (a no-op in others)."""
    import signal as _signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    fired: list[int] = []

    def handler(signum, frame):
        if fired:  # a second Ctrl-C must not interrupt the clean-up of the first
            return
        fired.append(signum)
        raise RunInterrupted(signum)

    old = {s: _signal.signal(s, handler) for s in (_signal.SIGINT, _signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            _signal.signal(s, h)


@contextmanager
def isolated_run(reports_dir: Path):
    """Everything that keeps runs apart, around ``run()``'s work: the reports lock, stale
    ``.tmp-*`` removed, a temporary folder for kernels' connection files and sockets,
    and SIGINT / SIGTERM handling (kernels ended, the temporary folder removed,
    :class:`RunInterrupted` raised; the run's ``.tmp-<id>`` goes with ``run()``'s own
    clean-up and ``latest`` is not touched)."""
    import tempfile

    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    with _stop_on_signals():
        with reports_lock(reports_dir, purpose="run"):
            stale = remove_stale_tmp(reports_dir)
            if stale:
                print(f"removed {len(stale)} unfinished run folder(s) left by an interrupted run: "
                      f"{', '.join(stale)}", file=sys.stderr)
            runtime = Path(tempfile.mkdtemp(prefix="omni-kernels-"))
            _RUNTIME_DIR.append(runtime)
            try:
                yield runtime
            except BaseException:
                _end_kernels()
                raise
            finally:
                _RUNTIME_DIR.remove(runtime)
                shutil.rmtree(runtime, ignore_errors=True)


# --------------------------------------------------------------------------- the run
def _new_run_id(reports_dir: Path) -> str:
    base = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id, n = base, 1
    while (reports_dir / run_id).exists() or (reports_dir / f".tmp-{run_id}").exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def _point_latest(reports_dir: Path, run_id: str) -> None:
    """Atomically repoint ``reports/latest`` at ``run_id`` (symlink swap)."""
    link = reports_dir / "latest"
    tmp = reports_dir / f".latest-{run_id}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(run_id, tmp)
    os.replace(tmp, link)


def run(
    notebooks: Iterable[str] | None = None,
    *,
    config_path: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    notebooks_dir: str | os.PathLike | None = None,
    reports_dir: str | os.PathLike | None = None,
    run_id: str | None = None,
    progress: bool = True,
    jobs: int | None = None,
) -> RunResult:
    """Execute notebooks and publish ``reports/<run_id>/``; see module docstring.

    ``jobs``: notebooks executed at the same time (default: ``$OMNI_JOBS``, else 2 on a machine
    with 2 or more cores, else 1). Each is its own kernel; memory adds up, so on a very large
    data set with little memory use ``jobs=1``.
    """
    if jobs is None:
        env_jobs = os.environ.get("OMNI_JOBS")
        jobs = int(env_jobs) if env_jobs and env_jobs.isdigit() else (2 if (os.cpu_count() or 1) >= 2 else 1)
    from tqdm.auto import tqdm

    from .config import ConfigError, find_config, load_config
    from .privacy import PrivacyError, preflight

    try:  # one rule for every command: --config, else $OMNI_CONFIG, else ./omni.yaml, else the project's
        config_path = find_config(config_path)
    except ConfigError as exc:
        raise RunError(str(exc)) from None
    root = config_path.parent
    if notebooks_dir is None:  # your own project's notebooks/ beside the config, else the shipped ones
        own = root / "notebooks"
        notebooks_dir = own if discover_notebooks(own) else default_notebooks_dir()
    notebooks_dir = Path(notebooks_dir)
    reports_dir = Path(reports_dir) if reports_dir else root / "reports"
    try:  # outside sample mode no run starts without a pseudonymisation key
        preflight(config_path)
        cfg = load_config(config_path)
        defaults = dict(cfg.params or {})
    except (PrivacyError, ConfigError) as exc:
        raise RunError(f"{config_path}: {exc}") from None
    if progress:
        print(f"omni run: {cfg.found_by}: {config_path}", file=sys.stderr)

    chosen = resolve_notebooks(notebooks, notebooks_dir)
    everything = discover_notebooks(notebooks_dir)
    check_config_params(defaults, everything, config_path.name)
    reports_dir = reports_dir.resolve()
    plan_parameters(chosen, defaults, overrides, None)  # a bad -p fails before the folder is touched
    # one run per reports folder at a time; kernels' files in a temporary folder of the run's own;
    # SIGINT / SIGTERM end the run (and its kernels) with nothing published
    with isolated_run(reports_dir):
        run_id = run_id or _new_run_id(reports_dir)
        _note_run_id(reports_dir, run_id)
        final = reports_dir / run_id
        if final.exists():
            raise RunError(f"run folder {final} already exists; earlier runs are never overwritten")
        tmp = reports_dir / f".tmp-{run_id}"
        plan = plan_parameters(chosen, defaults, overrides, config_path, tmp)
        needs_store = any(requirements(nb)["requires"] for nb in chosen)
        prep, prep_error = _prepare_store(cfg, progress) if needs_store else ({}, None)
        reports_dir.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        started = _dt.datetime.now().astimezone()
        results: list[NotebookResult] = []
        try:
            tty = sys.stderr.isatty()  # a log file gets plain lines, not a redrawn progress bar
            workers = max(1, min(int(jobs or 1), len(chosen) or 1))
            bar = tqdm(total=len(chosen), desc="notebooks", unit="nb", disable=not (progress and tty),
                       file=sys.stderr)
            done_count = [0]

            def one(nb: Path) -> NotebookResult:
                record = {**plan[nb], "output_dir": str(final)} if "output_dir" in plan[nb] else None
                res = _not_runnable(nb, plan[nb], cfg, prep, prep_error)
                if res is not None:
                    (tmp / f"{nb.stem}.json").write_text(json.dumps(asdict(res), indent=2, ensure_ascii=False),
                                                         encoding="utf-8")
                elif workers == 1:
                    res = execute_one(nb, tmp, plan[nb], cell_progress=progress and tty, record=record)
                else:  # its output files in a folder of its own, so each report lists only its own files
                    own = tmp / f".out-{nb.stem}"
                    own.mkdir()
                    params = {**plan[nb], "output_dir": str(own)} if "output_dir" in plan[nb] else plan[nb]
                    res = execute_one(nb, tmp, params, record=record, outputs_dir=own)
                return res

            def report_done(nb: Path, res: NotebookResult) -> None:
                done_count[0] += 1
                bar.update(1)
                bar.set_postfix_str(nb.stem)
                if progress and not tty:
                    print(f"[{done_count[0]}/{len(chosen)}] {nb.stem}: {res.status} ({res.duration_s:.1f} s)",
                          file=sys.stderr, flush=True)
                if res.status == "failed":
                    tqdm.write(f"FAILED {res.failure_line()}", file=sys.stderr)
                elif res.status == "skipped":
                    tqdm.write(f"skipped {nb.stem}: {res.reason}", file=sys.stderr)

            if workers == 1:
                for nb in chosen:
                    res = one(nb)
                    results.append(res)
                    report_done(nb, res)
            else:
                # Notebooks are independent kernels reading one read-only store: on a multi-core
                # machine two at a time halve the wall time (each kernel is mostly one core).
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omni-run") as pool:
                    futures = {nb: pool.submit(one, nb) for nb in chosen}
                    for nb in chosen:   # results in the notebooks' order, whatever finishes first
                        res = futures[nb].result()
                        results.append(res)
                        report_done(nb, res)
            bar.close()
            meta = {
                "run_id": run_id,
                "started": started.isoformat(timespec="seconds"),
                "finished": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "config": str(config_path),
                "overrides": json.dumps(to_jsonable(dict(overrides or {}))),
                "python": sys.version.split()[0],
            }
            (tmp / "index.html").write_text(_index_html(run_id, results, meta, history=_run_history(reports_dir)),
                                            encoding="utf-8")
            (tmp / "run.json").write_text(json.dumps(
                {**meta, "ok": all(r.status in ("ok", "skipped") for r in results),
                 "notebooks": [asdict(r) for r in results]}, indent=2, ensure_ascii=False),
                encoding="utf-8")
            os.rename(tmp, final)  # the run appears whole, in one step
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        result = RunResult(run_id=run_id, run_dir=final, results=results,
                           prepare={k: prep.get(k) for k in ("rebuilt", "seconds", "timings", "rows")} if prep else {})
        # reports/latest is the newest complete picture: every notebook of the folder, all passed
        # (a run of one notebook would otherwise replace it with a one-report run)
        result.moved_latest = result.ok and {p.resolve() for p in chosen} >= {p.resolve() for p in everything}
        if result.moved_latest:
            _point_latest(reports_dir, run_id)
        return result
