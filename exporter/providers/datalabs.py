"""DataLabs: the anti-captcha protocol at captcha.datalabs.net.

apibalance_balance_usd{provider="datalabs",account="main"} 12.5
"""

from exporter.providers.antigate import AntigateProvider


class DataLabs(AntigateProvider):
    type_name = "datalabs"
    service_names = ("DataLabs",)
    default_base_url = "https://captcha.datalabs.net"
    # DataLabs' site, where the captcha balance is bought (https://docs.datalabs.net).
    top_up_url = "https://datalabs.net"
