"""The provider registry: `provider:` in the config names one of these.

A type is loaded the first time it is asked for: a config uses a few of the types, and
loading them all (each built-in type's module and settings model, the http_json engine and
its expression language, every catalogue entry's definition validated and compiled) would
cost every start of the process time and memory for nothing. Going over the values (a
typo's hint, the demo, the tests) loads them all.
"""

from __future__ import annotations

import functools
import importlib
import importlib.resources
from collections.abc import Callable, Iterator, Mapping

from exporter.providers.base import Provider


class Registry(Mapping[str, type[Provider]]):
    """Provider types by name, each loaded when it is first asked for."""

    def __init__(self, loaders: Mapping[str, Callable[[], type[Provider]]]) -> None:
        self._loaders = dict(loaders)
        self._loaded: dict[str, type[Provider]] = {}

    def __getitem__(self, name: str) -> type[Provider]:
        found = self._loaded.get(name)
        if found is None:
            found = self._loaded[name] = self._loaders[name]()
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._loaders

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def loaded(self) -> list[str]:
        """The names loaded so far."""
        return sorted(self._loaded)


def _built_in(module: str, class_name: str) -> type[Provider]:
    provider: type[Provider] = getattr(
        importlib.import_module(f"exporter.providers.{module}"), class_name
    )
    return provider


def _http_json() -> type[Provider]:
    from exporter.providers.http_json import HttpJson

    return HttpJson


def _catalogue_entry(type_name: str) -> type[Provider]:
    from exporter.providers.catalogue import load_provider

    return load_provider(type_name)


def catalogue_names() -> list[str]:
    """The catalogue's type names: its files' names, without reading them."""
    folder = importlib.resources.files("exporter") / "catalogue"
    return sorted(
        item.name.removesuffix(".yml") for item in folder.iterdir() if item.name.endswith(".yml")
    )


# Each built-in type's class, in the module of this package named as the type.
_BUILT_IN_CLASSES = {
    "anticaptcha": "AntiCaptcha",
    "datalabs": "DataLabs",
    "vastcap": "VastCap",
    "decaptcha": "DeCaptcha",
    "ocean": "Ocean",
    "twocaptcha": "TwoCaptcha",
    "capsolver": "CapSolver",
    "capmonster": "CapMonster",
}
BUILT_IN = Registry(
    {
        **{
            name: functools.partial(_built_in, name, class_name)
            for name, class_name in _BUILT_IN_CLASSES.items()
        },
        "http_json": _http_json,
    }
)
# Ready http_json definitions of known services, one YAML file each (exporter/catalogue/).
CATALOGUE = Registry(
    {name: functools.partial(_catalogue_entry, name) for name in catalogue_names()}
)
PROVIDERS = Registry(
    {
        **{name: functools.partial(BUILT_IN.__getitem__, name) for name in BUILT_IN},
        **{name: functools.partial(CATALOGUE.__getitem__, name) for name in CATALOGUE},
    }
)

__all__ = ["BUILT_IN", "CATALOGUE", "PROVIDERS", "Provider", "Registry"]
