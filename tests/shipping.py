"""Helpers for the tests of what ships: the checkout as a build sees it, scraping a process or
container from outside, and the demo's account names to expect."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from exporter.demo import demo_accounts
from tests.helpers import Samples, accounts_in, integration, samples

ROOT = Path(__file__).parent.parent


def tracked_files() -> list[str]:
    """The checkout's files as git sees them (committed or new, never ignored ones)."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(name for name in listing if (ROOT / name).is_file())


@integration  # for builds: of a wheel, of an image
def copy_checkout(destination: Path) -> Path:
    """A clean copy of the checkout: builds write into it (egg-info, build/), not the repo."""
    for name in tracked_files():
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination / name)
    return destination


def demo_account_names() -> set[str]:
    return {account.name for account in demo_accounts()}


def fetch(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape_until(
    url: str, wanted: set[str], *, deadline: float = 60.0, up_only: bool = False
) -> Samples:
    """Scrape `url` until every account in `wanted` has an `apibalance_up` series (with value 1
    when `up_only`); fail with the last answer after `deadline` seconds."""
    end = time.monotonic() + deadline
    last = "nothing answered"
    while True:
        try:
            status, body = fetch(url)
            last = f"HTTP {status}\n{body}"
            if status == 200:
                found = samples(body)
                seen = accounts_in(found, "apibalance_up")
                if up_only:
                    seen = {
                        dict(labels)["account"]
                        for (name, labels), value in found.items()
                        if name == "apibalance_up" and value == 1
                    }
                if wanted <= seen:
                    return found
        except OSError as error:
            last = repr(error)
        if time.monotonic() > end:
            raise AssertionError(f"{url} never showed {sorted(wanted)}; last answer: {last}")
        time.sleep(0.5)


def shell_commands(section: str) -> list[str]:
    """The commands of a documentation section's ```sh blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", command).strip()
            if command and not command.startswith("#"):
                commands.append(" ".join(command.split()))
    return commands
