"""Execute notebooks in one profile and write self-contained HTML to project or share (`python -m tlcourse render`).

Each notebook runs as an in-memory copy in a fresh kernel of the current Python; the committed files never change.
"""

from __future__ import annotations

import html
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from . import config
from .errors import TLCourseError

DEFAULT_TIMEOUT = 1800  # seconds per cell: notebook 04's longest cell takes minutes on a 2-core CPU


@dataclass
class Rendered:
    """One notebook's outcome: where its HTML is, how long it ran, and the failing cell if one failed."""

    notebook: str
    title: str
    html: Path
    seconds: float
    error: str | None = None


def default_notebook_dir() -> Path:
    """The repository's ``notebooks/`` beside the package (an editable install), else ``./notebooks``."""
    beside = Path(__file__).resolve().parents[2] / "notebooks"
    return beside if beside.is_dir() else Path.cwd() / "notebooks"


def find_notebooks(folder: Path, wanted: Sequence[str] | None = None) -> list[Path]:
    """The numbered notebooks in ``folder``, or those named in ``wanted`` by number (``03``) or stem, in that order."""
    paths = sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise TLCourseError(f"no numbered notebooks (NN_name.ipynb) in {folder}; pass --notebook-dir")
    if not wanted:
        return paths
    by_key = {p.stem: p for p in paths} | {p.stem[:2]: p for p in paths}
    unknown = [w for w in wanted if w not in by_key]
    if unknown:
        raise TLCourseError(
            f"unknown notebook(s) {', '.join(unknown)}; choose from: {', '.join(p.stem for p in paths)} "
            "(the number alone is enough, e.g. 03)"
        )
    return list(dict.fromkeys(by_key[w] for w in wanted))


def _current_env_kernel():
    """A kernel manager that starts ipykernel in this Python, whatever kernel name the notebook asks for."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    class CurrentEnvSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES, **ipykernel.kernelspec.get_kernel_dict()
            )

    return KernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnvSpecs())


def section_of(nb, index: int) -> str:
    """The last ``##`` heading in the markdown cells before cell ``index`` (``""`` before the first)."""
    for cell in reversed(nb.cells[:index]):
        if cell.cell_type == "markdown":
            headings = re.findall(r"^## (.+)$", cell.source, flags=re.M)
            if headings:
                return headings[-1].strip()
    return ""


def describe_failure(nb, index: int | None, exc: BaseException) -> str:
    """One line naming the failing cell, its section and the error."""
    if index is None:
        return f"before the first cell: {exc}"
    cell = nb.cells[index]
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    what = f"{errors[0].ename}: {errors[0].evalue}" if errors else str(exc).strip().splitlines()[-1]
    where = f"cell {index}" + (f" (In [{cell.execution_count}])" if cell.get("execution_count") else "")
    section = section_of(nb, index)
    what = re.sub(r"\x1b\[[0-9;]*m", "", what)  # IPython colours evalue in some errors
    return f"{where}{f', section {section!r}' if section else ''}: {what}"


def execute_notebook(path: Path, profile: str, timeout: int = DEFAULT_TIMEOUT):
    """Run ``path`` top to bottom with ``TLCOURSE_PROFILE=profile``, cwd its folder; (executed copy, error or None)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)  # an in-memory copy: outputs never reach the file
    started: list[int] = []
    client = NotebookClient(
        nb,
        km=_current_env_kernel(),
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_start=lambda cell, cell_index: started.append(cell_index),
    )
    try:
        client.execute(env={**os.environ, "TLCOURSE_PROFILE": profile})
    except Exception as e:  # a failing cell, a timeout or a dead kernel: the HTML still shows what ran
        return nb, describe_failure(nb, started[-1] if started else None, e)
    return nb, None


def write_html(nb, out: Path, notebook_dir: Path, title: str) -> Path:
    """The executed notebook as one HTML file; figures are data: URIs, markdown images embedded too."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab", embed_images=True).from_notebook_node(
        nb, resources={"metadata": {"path": str(notebook_dir), "name": title}}
    )
    out.write_text(body, encoding="utf-8")
    return out


def notebook_title(nb, fallback: str) -> str:
    """The notebook's first ``#`` heading, e.g. ``03 · Feature extraction: ...``."""
    for cell in nb.cells:
        found = re.search(r"^# (.+)$", cell.source, flags=re.M) if cell.cell_type == "markdown" else None
        if found:
            return found.group(1).strip()
    return fallback


def write_index(results: Sequence[Rendered], out_dir: Path, profile: str, backbone: str) -> Path:
    """``index.html``: a link per notebook with its run time, or the cell that failed."""
    rows = []
    for r in results:
        status = f"failed at {html.escape(r.error)}" if r.error else "ran without errors"
        rows.append(f'<li><a href="{r.html.name}">{html.escape(r.title)}</a> — {status}, {r.seconds / 60:.1f} min</li>')
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>tlcourse notebooks</title>'
        "<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.5}</style></head>\n"
        f"<body><h1>tlcourse notebooks, executed</h1>\n<p>Profile {profile}, backbone {backbone}, "
        f"Python {sys.version.split()[0]}, rendered {date.today().isoformat()} by "
        "<code>python -m tlcourse render</code>. Times are this machine's.</p>\n<ul>\n" + "\n".join(rows) + "\n</ul>\n"
        "</body></html>\n"
    )
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def render_notebooks(
    out_dir: Path,
    profile: str | None = None,
    wanted: Sequence[str] | None = None,
    notebook_dir: Path | None = None,
    timeout: int = DEFAULT_TIMEOUT,
    report: Callable[[str], None] = print,
) -> list[Rendered]:
    """Execute the chosen notebooks in ``profile`` and write one HTML file each plus ``index.html`` to ``out_dir``."""
    cfg = config.get_config(profile)  # validates the profile and backbone names before any run
    notebook_dir = Path(notebook_dir or default_notebook_dir())
    paths = find_notebooks(notebook_dir, wanted)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for path in paths:
        report(f"running {path.stem} (profile {cfg.profile}) ...")
        t0 = time.perf_counter()
        nb, error = execute_notebook(path, cfg.profile, timeout)
        seconds = time.perf_counter() - t0
        title = notebook_title(nb, path.stem)
        html_path = write_html(nb, out_dir / f"{path.stem}.html", notebook_dir, title)
        results.append(Rendered(path.stem, title, html_path, seconds, error))
        report(f"  {'FAILED at ' + error if error else 'ok'} in {seconds:.0f} s -> {html_path}")
    write_index(results, out_dir, cfg.profile, cfg.backbone)
    return results


def cmd_render(a) -> int:
    """``python -m tlcourse render``: exit 1 naming each notebook and cell that failed (its HTML shows the error)."""
    results = render_notebooks(a.out, a.profile, a.notebooks, a.notebook_dir, a.timeout)
    print(f"wrote {len(results)} notebook(s) and {Path(a.out) / 'index.html'}")
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"error: {r.notebook} failed at {r.error} (the error is shown in {r.html})", file=sys.stderr)
    return 1 if failed else 0


def add_render_command(sub) -> None:
    """The ``render`` subcommand."""
    r = sub.add_parser("render", help="execute notebooks in a profile and write self-contained HTML plus an index")
    r.add_argument("out", type=Path, help="folder for the HTML files (created if missing)")
    r.add_argument(
        "--profile", choices=list(config.PROFILES), help="default: TLCOURSE_PROFILE, else quick (full on a GPU)"
    )
    r.add_argument("--notebooks", nargs="+", metavar="NN", help="numbers or names, e.g. 00 03 (default: all)")
    r.add_argument("--notebook-dir", type=Path, help="default: the repository's notebooks/")
    r.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help=f"seconds per cell (default {DEFAULT_TIMEOUT})")
    r.set_defaults(func=cmd_render)
