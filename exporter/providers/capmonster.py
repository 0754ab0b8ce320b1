"""CapMonster Cloud: the anti-captcha protocol at api.capmonster.cloud.

apibalance_balance_usd{provider="capmonster",account="main"} 345.678
"""

from exporter.providers.antigate import AntigateProvider


class CapMonster(AntigateProvider):
    type_name = "capmonster"
    default_base_url = "https://api.capmonster.cloud"
