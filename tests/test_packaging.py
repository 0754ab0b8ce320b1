"""The Python package as users get it (docs/deployment.md, "Install with pipx"):
`.venv/bin/pyproject-build` makes an sdist and a wheel that pass `twine check`; the wheel carries every file of the package and,
installed into a fresh venv, runs the demo; `pipx install .` installs the console script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers import free_port, require_tool
from tests.shipping import copy_checkout, demo_account_names, scrape_until, tracked_files

# Builds an sdist and a wheel and installs them into fresh venvs: minutes, not seconds.
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = copy_checkout(tmp_path_factory.mktemp("source"))
    out = tmp_path_factory.mktemp("dist")
    # As `pipx install .` leaves it: a build/ folder, which would shadow the module of
    # `python -m build` run here; the documented command is the tool's own script.
    (source / "build").mkdir(exist_ok=True)
    # Without flags build makes the sdist, then the wheel from the unpacked sdist: a file the
    # sdist forgets is missing from the wheel too.
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pyproject-build"), "--outdir", str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def only(directory: Path, pattern: str) -> Path:
    [path] = directory.glob(pattern)
    return path


def package_files() -> set[str]:
    return {
        name
        for name in tracked_files()
        if name.startswith("exporter/") and "__pycache__" not in name
    }


def serve_the_demo(script: Path, workdir: Path) -> None:
    """Run `script --demo` until every demo account shows on /metrics; SIGTERM ends it cleanly.
    It runs from `workdir`, so nothing can be imported from the checkout by accident."""
    port = free_port()
    process = subprocess.Popen(
        [str(script), "--demo", f"--web.listen-address=127.0.0.1:{port}"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    try:
        scrape_until(f"http://127.0.0.1:{port}/metrics", demo_account_names())
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr


@pytest.mark.timeout(600)
def test_twine_accepts_the_sdist_and_the_wheel(dist: Path) -> None:
    files = [only(dist, "*.tar.gz"), only(dist, "*.whl")]
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout


@pytest.mark.timeout(600)
def test_the_wheel_and_sdist_carry_every_file_of_the_package(dist: Path) -> None:
    wheel = set(zipfile.ZipFile(only(dist, "*.whl")).namelist())
    missing = package_files() - wheel
    assert not missing, f"not in the wheel: {sorted(missing)}"
    with tarfile.open(only(dist, "*.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    missing = (package_files() | {"README.md", "pyproject.toml"}) - names
    assert not missing, f"not in the sdist: {sorted(missing)}"
    entry_points = zipfile.ZipFile(only(dist, "*.whl")).read(
        next(name for name in wheel if name.endswith(".dist-info/entry_points.txt"))
    )
    assert b"apibalance-exporter = exporter.cli:main" in entry_points


@pytest.mark.timeout(600)
def test_the_wheel_installed_in_a_fresh_venv_serves_the_demo(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(only(dist, "*.whl"))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    serve_the_demo(venv / "bin" / "apibalance-exporter", tmp_path)


@pytest.mark.timeout(600)
def test_pipx_installs_the_checkout(tmp_path: Path) -> None:
    pipx = require_tool("pipx", package="pipx")
    source = copy_checkout(tmp_path / "source")
    home, bin_dir = tmp_path / "pipx", tmp_path / "bin"
    env = {**os.environ, "PIPX_HOME": str(home), "PIPX_BIN_DIR": str(bin_dir)}
    # The documented command, run in the checkout.
    result = subprocess.run(
        [pipx, "install", "."], cwd=source, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    serve_the_demo(bin_dir / "apibalance-exporter", tmp_path)
