"""Any balance API, by config: `request` says how to ask, `values` where to read.

    - name: sms
      provider: http_json
      api_key_env: SMS_KEY
      secrets: {account_id: {env: SMS_ACCOUNT}}
      request:
        url: https://api.example.com/v1/accounts/{account_id}/balance
        method: POST
        headers: {Authorization: "Bearer {api_key}"}
        query: {format: json}
        json: {key: "{api_key}"}
      values:
        balance_usd: data.balance
        credits:
          - {credit_type: sms, pool: one_time, path: "subtract(credits.limit, credits.used)"}
      error: error.code
      error_reasons: {auth: [invalid_key]}

Placeholders, `{api_key}`, `{<secret name>}` and (after a `login` call) `{token}`, are
filled in the path of `request.url`, header values, `query` values, the string values of the
`json` body, `form` values and `basic_auth`; any other `{...}` is sent as it is. The host, a
static query string and everything the exporter prints about a request never carry one.
`values` and `error` are JMESPath expressions (with the arithmetic functions of
`exporter.providers.http_json.expressions`, and `header('Name')` for a response header),
compiled and checked when the config loads; a plain-text answer (`response: {format: text,
pattern: ...}`) is read through the named groups of a regular expression. A value may be a
JSON number or a numeric string (`"1,250.75"`); a configured value that is null or missing,
not a number, NaN or infinite is `invalid_response`. A value only some answers hold is written
`{path: ..., when: ...}` (a credit takes `when` too): read when `when` is true, else absent
from that collection; an answer that holds none of the values is `invalid_response`.
`balance_usd` may be negative (postpaid accounts do go below zero, and that is what the alert
is for); credits and daily limits may not.

A `login` (`request`, `token`, `expires_in` or `lifetime`, and its own `error` and
`error_reasons`) trades the key for a token first; an OAuth 2 client-credentials grant is a
login whose form (or Basic auth) carries the client's id and secret.

Money in another currency is `balance` (in the account's `currency`, default USD), or
`balance` with `currency`: where the answer says which currency it is. A currency read from
the answer must be three letters and must not change from one collection to the next (the
engine checks that); anything else is `invalid_response`, never a number in the wrong unit.

Failures map to the same reasons as the built-in providers: 401/403 `auth`, 429
`rate_limited` (honouring Retry-After), a status outside `ok_status` (default: any 2xx) `http`,
or, when a 4xx answer or an ok answer has the `error` expression not null, the reason
`error_reasons` gives its value (default `provider_error`). A service whose statuses mean
something else says so in `status_reasons` (`{403: rate_limited}`), which comes first. The
provider's error text never reaches logs or labels: the cause names only a value the config
listed.

    apibalance_balance_usd{provider="http_json",account="sms"} 1250.75
    apibalance_credits{provider="http_json",account="sms",credit_type="sms",pool="one_time"} 830

The package is layered: `expressions` (JMESPath, its functions and budget), `settings` (the
config models, which check expressions at load) and `provider` (the requests and the reading),
each importing only from those before it.
"""

from exporter.providers.http_json.provider import HttpJson
from exporter.providers.http_json.settings import HttpJsonSettings

__all__ = ["HttpJson", "HttpJsonSettings"]
