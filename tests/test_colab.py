"""Open and run anywhere: the first cell in a clone and in (simulated) Colab, the banner, a slim install."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest

from tlcourse import config, runtime

ROOT = Path(__file__).resolve().parents[1]
# What the notebooks need beyond tlcourse that a Colab runtime already ships (dependencies follow).
COLAB_SHIPS = (
    "pip",
    "torch",
    "torchvision",
    "numpy",
    "pillow",
    "scipy",
    "scikit-learn",
    "scikit-image",
    "matplotlib",
    "seaborn",
    "pandas",
    "tqdm",
    "platformdirs",
    "ipykernel",
    "ipywidgets",
    "httpx",
    "requests",
)
# What Colab lacks and the first cell must install (core dependencies and the [colab] extra).
COLAB_LACKS = ("tlcourse", "onnxruntime", "onnx", "onnxscript", "fastapi", "python-multipart")
COLAB_STUB = {
    "__init__.py": '"""A stand-in for Colab\'s google.colab package (tests only)."""\n',
    "output.py": "CALLS = []\n\n\ndef enable_custom_widget_manager():\n    CALLS.append('enable_widgets')\n",
}
BLOCKED = ("ipywidgets", "IPython", "fastapi", "uvicorn", "httpx", "multipart", "python_multipart", "onnx")
BLOCKED += ("onnxscript", "pytest", "nbval", "nbclient", "hypothesis", "jupyterlab", "skimage")


def first_cell() -> str:
    nb = json.loads((ROOT / "notebooks" / "00_quickstart.ipynb").read_text())
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


# ---------------------------------------------------------------- fast checks


@pytest.mark.slow
def test_banner_names_device_precision_and_data_and_in_colab_how_to_get_a_gpu(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setattr(runtime, "in_colab", lambda: False)
    line = runtime.describe(config.get_config("smoke", device="cpu"))
    assert "device=CPU, fp32 |" in line and "| data=" in line and "Runtime > Change runtime type" not in line
    monkeypatch.undo()

    stub = types.ModuleType("google.colab")
    stub.output = types.SimpleNamespace(calls=[], enable_custom_widget_manager=lambda: stub.output.calls.append(1))
    monkeypatch.setitem(sys.modules, "google.colab", stub)
    assert runtime.in_colab()
    cfg = runtime.setup_notebook("smoke", device="cpu")
    banner = capsys.readouterr().out.strip()
    assert banner.count("\n") == 0 and "device=CPU, fp32" in banner
    assert runtime.COLAB_GPU_HINT in banner and "Runtime > Change runtime type > T4 GPU" in banner
    assert cfg.profile == "smoke"


@pytest.mark.slow
def test_core_modules_import_without_notebook_test_or_deploy_tools():
    code = (
        "import sys, pkgutil, importlib\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None\n"
        "import tlcourse\n"
        "for m in pkgutil.iter_modules(tlcourse.__path__):\n"
        "    if m.name not in ('serve', '__main__'):  # serve is the [deploy] extra's FastAPI app\n"
        "        importlib.import_module('tlcourse.' + m.name)\n"
        "sys.argv = ['tlcourse', '--help']\n"
        "import runpy\n"
        "runpy.run_module('tlcourse', run_name='__main__')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "train" in run.stdout and "predict" in run.stdout


def _run_first_cell(cwd: Path) -> subprocess.CompletedProcess:
    """The first cell in a fresh interpreter whose sys.path lacks the editable install's src/."""
    src = str(ROOT / "src")
    code = (
        "import sys\n"
        f"sys.path[:] = [p for p in sys.path if p.rstrip('/') != {src!r}]\n"
        "try:\n    import tlcourse\nexcept ImportError:\n    pass\nelse:\n    sys.exit(77)\n" + first_cell()
    )
    env = {**os.environ, "TLCOURSE_PROFILE": "smoke", "PYTHONPATH": ""}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["notebooks", "."])
def test_first_cell_in_a_clone_that_is_not_installed_uses_its_src(where):
    run = _run_first_cell(ROOT / where)
    if run.returncode == 77:
        pytest.skip("tlcourse is installed non-editable here: the clone branch cannot be isolated")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("tlcourse | profile=smoke") and "device=CPU" in run.stdout
    assert "Installing" not in run.stdout


def test_first_cell_elsewhere_without_colab_says_how_to_install(tmp_path):
    run = _run_first_cell(tmp_path)
    if run.returncode == 77:
        pytest.skip("tlcourse is installed non-editable here")
    assert run.returncode != 0 and "Installing" not in run.stdout
    assert "pip install -r requirements.txt" in run.stderr.splitlines()[-1]


# ---------------------------------------------------------------- simulated Colab (slow)


def _closure(names: tuple[str, ...]) -> dict[str, metadata.Distribution]:
    """The installed distributions ``names`` need, with their dependencies (no extras), by normalized name."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found, todo = {}, list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            found[name] = dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional or platform-specific dependency that is not installed here
        for req in map(Requirement, dist.requires or []):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return found


def _build_fake_colab(dest: Path, dists: dict[str, metadata.Distribution]) -> None:
    """A venv whose site-packages links this environment's packages in ``dists`` (nothing else).

    Package folders are symlinks; each dist-info is a copy without its RECORD, so any attempt by pip to
    uninstall (reinstall, upgrade) one of them fails instead of deleting files of this environment.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest)], check=True)
    site = dest / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    owners: dict[str, set[str]] = {}  # top-level name in site-packages -> the distributions with files in it
    for dist in metadata.distributions():
        for f in dist.files or []:
            if f.parts and not f.parts[0].startswith("..") and not f.parts[0].endswith((".dist-info", ".pth")):
                owners.setdefault(f.parts[0], set()).add(dist.metadata["Name"])
    for dist in dists.values():
        src_site = Path(dist.locate_file(""))
        info = next(f.parts[0] for f in dist.files if f.parts[0].endswith(".dist-info"))
        shutil.copytree(src_site / info, site / info, ignore=shutil.ignore_patterns("RECORD", "direct_url.json"))
        for top in {f.parts[0] for f in dist.files or [] if f.parts and not f.parts[0].startswith("..")}:
            if top.endswith((".dist-info", ".pth")) or top == "__pycache__" or (site / top).exists():
                continue
            if len(owners.get(top, ())) > 1 or top == "google":  # a namespace folder: link only this dist's part
                (site / top).mkdir(exist_ok=True)
                for f in dist.files:
                    if len(f.parts) > 1 and f.parts[0] == top and not (site / top / f.parts[1]).exists():
                        (site / top / f.parts[1]).symlink_to(src_site / top / f.parts[1])
            else:
                (site / top).symlink_to(src_site / top)
    for fname, text in COLAB_STUB.items():
        (site / "google" / "colab").mkdir(parents=True, exist_ok=True)
        (site / "google" / "colab" / fname).write_text(text)


def _fake_colab_venv(tmp_path: Path) -> Path:
    """The fake-Colab venv, built once per package set into .cache/ and copied (symlinks and all) per run."""
    dists = _closure(COLAB_SHIPS)
    leaked = {n for n in dists if n in {c.replace("_", "-") for c in COLAB_LACKS}}
    assert not leaked, f"the fake Colab would already hold {leaked}"
    key = hashlib.sha1(
        repr((sys.version, sys.prefix, sorted((n, d.version) for n, d in dists.items()), COLAB_STUB)).encode()
    )
    cached = ROOT / ".cache" / f"fake-colab-{key.hexdigest()[:12]}"
    if not cached.exists():
        building = cached.with_name(cached.name + f".{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        _build_fake_colab(building, dists)
        building.rename(cached)
    venv = tmp_path / "colab-venv"
    shutil.copytree(cached, venv, symlinks=True)
    return venv


def _snapshot_repo(dest: Path) -> None:
    """The working tree's current files (tracked and new, not ignored), committed on ``main`` in ``dest``."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for rel in filter(None, files.split("\0")):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(dest)], check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], cwd=dest, check=True)


@pytest.mark.slow
def test_notebook_00_runs_in_a_simulated_colab(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    if not shutil.which("git"):
        pytest.skip("git is needed to install from a git URL")
    venv = _fake_colab_venv(tmp_path)
    repo = tmp_path / "github"
    _snapshot_repo(repo)
    url = (ROOT / "pyproject.toml").read_text().split('Repository = "')[1].split('"')[0]

    kernels = tmp_path / "jupyter" / "kernels" / "fake-colab"
    kernels.mkdir(parents=True)
    argv = [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kernels / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "fake Colab", "language": "python"}))
    for name in [k for k in os.environ if k.startswith(("TLCOURSE_", "PYTHON", "PIP_"))]:
        monkeypatch.delenv(name)
    workdir = tmp_path / "content"  # Colab's working folder: no clone of the repository above it
    workdir.mkdir()
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("VIRTUAL_ENV", str(venv))
    monkeypatch.setenv("PATH", f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TLCOURSE_PROFILE", "smoke")
    monkeypatch.setenv("TLCOURSE_CACHE_DIR", str(tmp_path / "cache"))  # no data: the smoke profile uses the sample
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "agg")
    # The cell installs from the repository URL unchanged; git reads it from the local snapshot instead.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.file://{repo}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", url)

    nb = nbformat.read(ROOT / "notebooks" / "00_quickstart.ipynb", as_version=4)
    probe = (
        "import google.colab.output, sys, tlcourse, torch\n"
        "print('CHECK', tlcourse.__file__, torch.__file__, google.colab.output.CALLS, sys.prefix)"
    )
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    client = nbclient.NotebookClient(
        nb, kernel_name="fake-colab", timeout=900, resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()

    def text(cell) -> str:
        return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")

    first = text(next(c for c in nb.cells if c.cell_type == "code"))
    assert "Installing tlcourse from GitHub" in first
    banner = first.splitlines()[-1]
    assert banner.startswith("tlcourse | profile=smoke") and "device=CPU, fp32" in banner
    assert "data=sample" in banner and "backbone=efficientnet_lite0" in banner
    assert "Runtime > Change runtime type > T4 GPU" in banner
    check = text(nb.cells[-1]).split("CHECK ")[1].split()
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert check[0] == str(site / "tlcourse" / "__init__.py")  # installed, not editable, not the clone
    assert check[1] == str(site / "torch" / "__init__.py") and (site / "torch").is_symlink()  # Colab's torch kept
    assert "enable_widgets" in check[2] and check[-1] == str(venv)
    torch_infos = list(site.glob("torch-*.dist-info"))
    assert len(torch_infos) == 1 and not (torch_infos[0] / "RECORD").exists()  # pip never reinstalled torch
