"""Typed helpers shared by the tests: config files, exposition parsing, external tools."""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

IN_CI = os.environ.get("CI") == "true"

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


def write_config(
    directory: Path, data: Mapping[str, Any] | str, name: str = "apibalance.yml"
) -> Path:
    """Write a config file (a mapping is dumped as YAML; text is written as it is)."""
    path = directory / name
    text = data if isinstance(data, str) else yaml.safe_dump(dict(data), sort_keys=False)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def account(name: str, provider: str, key: str, base_url: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "provider": provider, "api_key": key, "base_url": base_url, **more}


def samples(exposition: str) -> Samples:
    """Every sample of a text exposition, keyed by (name, labels)."""
    found: Samples = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def labels(**pairs: str) -> Labels:
    return frozenset(pairs.items())


def value(found: Samples, name: str, **pairs: str) -> float | None:
    return found.get((name, labels(**pairs)))


def series_of(found: Samples, name: str) -> list[Labels]:
    return [key[1] for key in found if key[0] == name]


def accounts_in(found: Samples, name: str) -> set[str]:
    return {dict(lbls)["account"] for lbls in series_of(found, name)}


README = Path(__file__).parent.parent / "README.md"


def readme_yaml(heading: str | None = None) -> list[str]:
    """The ```yaml blocks of the README, or of its section under `heading` (`## ...`)."""
    text = README.read_text(encoding="utf-8")
    if heading is not None:
        start = text.index(f"\n{heading}\n")
        end = text.find("\n## ", start + 1)
        text = text[start : end if end != -1 else None]
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for programs that must be told a port to listen on)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_tool(name: str) -> str:
    """The path of an external tool; skip (fail in CI) with the reason when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test installs Debian's prometheus packages)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def no_secret_in(texts: Iterable[str | bytes], secret: str) -> None:
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        assert secret.encode() not in data


class FrozenClock:
    """A clock for the engine that moves only when told (durations 0, fixed timestamps)."""

    def __init__(self, wall: float = 1_700_000_000.0, monotonic: float = 1000.0) -> None:
        self._wall = wall
        self._monotonic = monotonic

    def wall(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._monotonic += seconds
