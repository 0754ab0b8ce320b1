"""2Captcha: the anti-captcha protocol (API v2) at api.2captcha.com.

apibalance_balance_usd{provider="twocaptcha",account="main"} 3.2
"""

from exporter.providers.antigate import AntigateProvider


class TwoCaptcha(AntigateProvider):
    type_name = "twocaptcha"
    service_names = ("2Captcha", "2Captcha.com")
    default_base_url = "https://api.2captcha.com"
    # 2Captcha's payment page: its API docs give no billing page; this is the address
    # open-source clients link.
    top_up_url = "https://2captcha.com/pay"
