"""CapMonster Cloud: the anti-captcha protocol at api.capmonster.cloud.

Repeated bad requests (an unknown key, a zero balance) get the IP banned with
`ERROR_IP_BANNED` (https://zennolab.atlassian.net/wiki/spaces/APIS/pages/295396/Error+Types);
the ban lifts after 10 minutes provided the requests stop
(https://docs.capmonster.cloud/docs/api/block-reason/), so it is waited out as `rate_limited`.
The service labels its JSON `text/plain`; only the body is read, never the Content-Type.

apibalance_balance_usd{provider="capmonster",account="main"} 345.678
"""

from types import MappingProxyType

from exporter.providers.antigate import AntigateProvider


class CapMonster(AntigateProvider):
    type_name = "capmonster"
    service_names = ("CapMonster Cloud", "CapMonster.cloud")
    default_base_url = "https://api.capmonster.cloud"
    # CapMonster Cloud's dashboard (docs.capmonster.cloud links it), where funds are added: its
    # Getting started shows the balance there, then has it topped up
    # (https://docs.capmonster.cloud/docs/getting-start/).
    top_up_url = "https://dash.capmonster.cloud"
    temporary_blocks = MappingProxyType({"ERROR_IP_BANNED": 10 * 60.0})
