"""Building and running the real Dockerfile without a Docker daemon: Debian's buildah, podman,
runc and debootstrap, each store kept in one directory that is removed afterwards.

No registry is reachable, so `python:3.11-slim` is stood in for by a debootstrapped Debian
bookworm (Python 3.11, the same release the slim image carries) tagged with the name the
Dockerfile asks for; the mirror is the one this machine's apt already uses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.helpers import unavailable

TOOLS = ("buildah", "podman", "runc", "debootstrap")
BASE_IMAGE = "localhost/python:3.11-slim"
BASE_SUITE = "bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
APT_SOURCES = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]


def require_container_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed (make test installs them when root)")
    if os.geteuid() != 0:
        unavailable("building and running images here needs root (debootstrap, rootful podman)")
    if not HOST_CA_BUNDLE.is_file():
        unavailable(f"no {HOST_CA_BUNDLE}: the build's pip would not trust what this host trusts")


def debian_mirror(sources: Sequence[Path] = APT_SOURCES) -> str:
    """The Debian archive this machine's apt uses (one-line or deb822 sources), never the
    security archive or an -updates suite."""
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = dict(
                    re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.MULTILINE)
                )
                if "deb" not in fields.get("Types", "").split():
                    continue
                suites = fields.get("Suites", "").split()
                if (
                    any("-" not in suite for suite in suites)
                    and "main" in fields.get("Components", "").split()
                ):
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", line.strip())
                if match and "-" not in match[2] and "main" in match[3].split():
                    return match[1]
    unavailable("no Debian archive in this machine's apt sources to debootstrap the base from")
    raise AssertionError("unreachable")


class Containers:
    """buildah and podman on a store of their own in a new directory."""

    def __init__(self) -> None:
        # Short and under /tmp: podman refuses a run root longer than 50 characters.
        self.directory = Path(tempfile.mkdtemp(prefix="apibalance-containers-", dir="/tmp"))
        storage = self.directory / "storage"
        self.storage = [
            "--root",
            str(storage / "root"),
            "--runroot",
            str(storage / "run"),
            "--storage-driver",
            "overlay",
        ]

    def run(
        self,
        program: str,
        *args: str,
        check: bool = True,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        extra: list[str] = []
        if program == "podman":
            # crun cannot start containers on this kind of host; runc can.
            extra = ["--runtime", "runc", "--tmpdir", str(self.directory / "libpod")]
        result = subprocess.run(
            [program, *self.storage, *extra, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("podman", *args, check=check)

    def make_base_image(self) -> None:
        rootfs = self.directory / "rootfs"
        result = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3-venv,ca-certificates",
                BASE_SUITE,
                str(rootfs),
                debian_mirror(),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        # Where the official image has its python, so the Dockerfile's `python` resolves.
        for name in ("python", "python3"):
            (rootfs / "usr/local/bin" / name).symlink_to("/usr/bin/python3")
        shutil.copy2(HOST_CA_BUNDLE, rootfs / HOST_CA_BUNDLE.relative_to("/"))
        archive = self.directory / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(archive), "."], check=True)
        shutil.rmtree(rootfs)
        self.run(
            "podman",
            "import",
            "--change",
            "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "ENV LANG=C.UTF-8",
            str(archive),
            BASE_IMAGE,
        )
        archive.unlink()

    def build(self, context: Path, tag: str) -> None:
        # chroot isolation: the default (oci) fails on hosts with hybrid cgroups; the docker
        # format keeps the HEALTHCHECK, which OCI image configs cannot carry.
        self.run(
            "buildah",
            "bud",
            "--pull=never",
            "--isolation",
            "chroot",
            "--format",
            "docker",
            "--layers=false",
            "-t",
            tag,
            str(context),
            timeout=900,
        )

    def remove_everything(self) -> None:
        self.podman("rm", "--all", "--force", "--time", "0", check=False)
        self.podman("system", "reset", "--force", check=False)
        shutil.rmtree(self.directory, ignore_errors=True)
