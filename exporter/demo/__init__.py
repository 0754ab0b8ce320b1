"""`--demo` and the tests' fake upstream: a real HTTP server on loopback that speaks each
provider's documented API, so the real provider code runs end to end.

- `server`: the small server (routing, bookkeeping, the fault hook) and `SimAccount`;
- one fake per provider family: `antigate` (the anti-captcha protocol), `vastcap`,
  `decaptcha`, `ocean`, `catalogue` (every catalogue entry, from its answers file) and
  `json_apis` (the `http_json` sample services);
- `simulator`: all of them in one server;
- `accounts`: the demo accounts and `start_demo`.
"""

from exporter.demo.accounts import (
    DEMO_SOURCE,
    DemoAccount,
    catalogue_accounts,
    demo_accounts,
    start_demo,
)
from exporter.demo.server import NGINX_502, Fault, SimAccount, delay, respond
from exporter.demo.simulator import Simulator

__all__ = [
    "DEMO_SOURCE",
    "NGINX_502",
    "DemoAccount",
    "Fault",
    "SimAccount",
    "Simulator",
    "catalogue_accounts",
    "delay",
    "demo_accounts",
    "respond",
    "start_demo",
]
