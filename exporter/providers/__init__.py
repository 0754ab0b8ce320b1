"""The provider registry: `provider:` in the config names one of these."""

from exporter.providers.anticaptcha import AntiCaptcha
from exporter.providers.base import Provider
from exporter.providers.capmonster import CapMonster
from exporter.providers.capsolver import CapSolver
from exporter.providers.catalogue import load_catalogue
from exporter.providers.datalabs import DataLabs
from exporter.providers.decaptcha import DeCaptcha
from exporter.providers.http_json import HttpJson
from exporter.providers.ocean import Ocean
from exporter.providers.twocaptcha import TwoCaptcha
from exporter.providers.vastcap import VastCap

BUILT_IN: dict[str, type[Provider]] = {
    provider.type_name: provider
    for provider in (
        AntiCaptcha,
        DataLabs,
        VastCap,
        DeCaptcha,
        Ocean,
        TwoCaptcha,
        CapSolver,
        CapMonster,
        HttpJson,
    )
}
# Ready http_json definitions of known services, one YAML file each (exporter/catalogue/).
CATALOGUE: dict[str, type[Provider]] = dict(load_catalogue())
PROVIDERS: dict[str, type[Provider]] = {**BUILT_IN, **CATALOGUE}

__all__ = ["BUILT_IN", "CATALOGUE", "PROVIDERS", "Provider"]
