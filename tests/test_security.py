"""TLS, basic auth and client certificates on a real listening exporter (`--web.config.file`),
key and certificate rotation on reload. Every request goes over loopback TCP, through TLS
where the web config asks for it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import http.client
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme

from exporter.cli import Running, parse_args, start
from exporter.connections import AcceptErrorFilter, fit_to_file_limit, raise_file_limit
from exporter.demo import SimAccount, Simulator
from exporter.http import Exporter
from tests.attacks import (
    UNFINISHED_HEAD,
    UNFINISHED_HEAD_OF_ALLOWED_LINES,
    PipelineFlood,
    close_all,
    closed_by_server,
    connect,
    connect_watching_memory,
    http_get,
    http_status,
    password_flood,
    pipeline_without_reading,
    reset_by_server,
)
from tests.helpers import (
    ExporterProcess,
    account,
    free_port,
    samples,
    value,
    write_config,
)

PASSWORD = "correct horse battery staple"
ENDPOINTS = [
    ("GET", "/"),
    ("GET", "/metrics"),
    ("GET", "/probe?account=labs"),
    ("GET", "/-/healthy"),
    ("GET", "/-/ready"),
    ("POST", "/-/reload"),
    ("GET", "/no-such-page"),
]


def hashed(password: str | bytes, cost: int = 4, prefix: str = "2b") -> str:
    raw = password.encode() if isinstance(password, str) else password
    text = bcrypt.hashpw(raw, bcrypt.gensalt(cost)).decode()
    return f"${prefix}${text[4:]}"


def basic(user: str | bytes, password: str | bytes) -> str:
    raw_user = user.encode() if isinstance(user, str) else user
    raw_password = password.encode() if isinstance(password, str) else password
    return "Basic " + base64.b64encode(raw_user + b":" + raw_password).decode()


@dataclass
class Served:
    exporter: Exporter
    url: str
    web_config: Path
    config: Path

    @property
    def auth(self) -> Any:
        guard = self.exporter.guard
        assert guard is not None
        return guard.guard.auth


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def serve(tmp_path: Path, simulator: Simulator, ca: trustme.CA) -> AsyncIterator[Serve]:
    """Start the exporter as the command line does, on a free loopback port."""
    running: list[Running] = []
    simulator.add("datalabs", SimAccount("labs-key", balance=12.5))
    simulator.add("datalabs", SimAccount("other-key", balance=3.0))

    async def start_exporter(
        web_config: str, *, tls: bool = False, flags: tuple[str, ...] = ()
    ) -> Served:
        config = write_config(
            tmp_path,
            {
                "global": {"cache_ttl": "0s"},
                "accounts": [
                    account("labs", "datalabs", "labs-key", simulator.base_url("datalabs")),
                    account("other", "datalabs", "other-key", simulator.base_url("datalabs")),
                ],
            },
        )
        web_path = tmp_path / "web.yml"
        web_path.write_text(web_config)
        port = free_port()
        args = parse_args(
            ["--config.file", str(config), "--web.config.file", str(web_path), *flags]
        )
        exporter, handle = await start(args, [("127.0.0.1", port)])
        running.append(handle)
        scheme = "https" if tls else "http"
        return Served(exporter, f"{scheme}://localhost:{port}", web_path, config)

    yield start_exporter
    for handle in running:
        await handle.close()


def issue_server_cert(ca: trustme.CA, directory: Path, name: str = "server") -> trustme.LeafCert:
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(directory / f"{name}.crt"))
    cert.private_key_pem.write_to_path(str(directory / f"{name}.key"))
    return cert


def client_context(ca: trustme.CA, client: trustme.LeafCert | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client is not None:
        client.configure_cert(context)
    return context


async def get(
    url: str,
    *,
    authorization: str | None = None,
    ssl_context: ssl.SSLContext | bool = True,
    method: str = "GET",
) -> tuple[int, str, dict[str, str]]:
    headers = {"Authorization": authorization} if authorization else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers, ssl=ssl_context) as response,
    ):
        return response.status, await response.text(), dict(response.headers)


# -- basic auth ---------------------------------------------------------------------------


async def test_every_endpoint_needs_the_password(serve: Serve) -> None:
    served = await serve(f"basic_auth_users:\n  prometheus: {hashed(PASSWORD)}\n")
    for method, path in ENDPOINTS:
        status, text, headers = await get(served.url + path, method=method)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith('Basic realm="apibalance-exporter"')
        assert "balance" not in text
    good = basic("prometheus", PASSWORD)
    for method, path in ENDPOINTS:
        status, _, _ = await get(served.url + path, authorization=good, method=method)
        assert status == (404 if path == "/no-such-page" else 200), path


@pytest.mark.parametrize(
    "authorization",
    [
        basic("prometheus", "wrong"),
        basic("nobody", PASSWORD),
        basic("Prometheus", PASSWORD),
        basic("", PASSWORD),
        basic("prometheus", ""),
        "Bearer " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode(),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"prometheus-without-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:" + PASSWORD.encode()).decode(),
        "Basic",
    ],
)
async def test_wrong_credentials_are_refused(serve: Serve, authorization: str) -> None:
    served = await serve(f"basic_auth_users:\n  prometheus: {hashed(PASSWORD)}\n")
    status, _, _ = await get(served.url + "/metrics", authorization=authorization)
    assert status == 401


async def test_a_wrong_user_costs_a_bcrypt_check_like_a_wrong_password(serve: Serve) -> None:
    served = await serve(f"basic_auth_users:\n  prometheus: {hashed(PASSWORD, cost=6)}\n")
    assert (await get(served.url + "/", authorization=basic("prometheus", "wrong")))[0] == 401
    assert served.auth.bcrypt_checks == 1
    assert (await get(served.url + "/", authorization=basic("nobody", "wrong")))[0] == 401
    assert served.auth.bcrypt_checks == 2
    # The dummy hash an unknown user is checked against has the users' cost: same time.
    assert served.auth._dummy_hash.startswith(b"$2b$06$")


@pytest.mark.parametrize("prefix", ["2a", "2b", "2y"])
async def test_hashes_of_every_bcrypt_version_work(serve: Serve, prefix: str) -> None:
    served = await serve(f"basic_auth_users:\n  u: {hashed(PASSWORD, prefix=prefix)}\n")
    assert (await get(served.url + "/", authorization=basic("u", PASSWORD)))[0] == 200


async def test_toolkit_bcrypt_edge_cases(serve: Serve) -> None:
    colon = "pass:with:colons"
    unicode = "pässwörd-ключ-🔑"
    long_password = "x" * 72
    served = await serve(
        "basic_auth_users:\n"
        f"  colon: {hashed(colon)}\n"
        f"  unicode: {hashed(unicode)}\n"
        f"  empty: {hashed('')}\n"
        f"  long: {hashed(long_password)}\n"
        f"  'ユーザー': {hashed(PASSWORD)}\n"
    )

    async def status(user: str | bytes, password: str | bytes) -> int:
        return (await get(served.url + "/", authorization=basic(user, password)))[0]

    # Basic auth splits at the first colon: the rest belongs to the password.
    assert await status("colon", colon) == 200
    assert await status("colon", "pass") == 401
    assert await status("unicode", unicode) == 200
    assert await status("unicode", unicode.encode("utf-8")[:-1]) == 401
    assert await status("empty", "") == 200
    assert await status("empty", " ") == 401
    assert await status("ユーザー", PASSWORD) == 200
    # bcrypt reads 72 bytes; longer passwords are refused (as Go's bcrypt does), even when
    # their first 72 bytes are right, rather than silently cut.
    assert await status("long", long_password) == 200
    assert await status("long", long_password + "y") == 401
    # C bcrypt stops reading at a NUL byte; such passwords are refused, not cut.
    assert await status("empty", "\0") == 401
    assert await status("colon", colon + "\0anything") == 401


async def test_the_cache_cannot_be_used_to_log_in(serve: Serve) -> None:
    """The toolkit's CVE-2022-46146: a cache key built by concatenation let a crafted user
    and password match a cached successful login. Here every triple is its own entry."""
    served = await serve(
        f"basic_auth_users:\n  alice: {hashed('secret')}\n  bob: {hashed('other')}\n"
    )
    assert (await get(served.url + "/", authorization=basic("alice", "secret")))[0] == 200
    attempts = [
        ("alic", "esecret"),
        ("alice", "secre"),
        ("alice", "secret\0"),
        ("alice\0", "secret"),
        ("bob", "secret"),
        ("nobody", "secret"),
        ("", "alice:secret"),
    ]
    for user, password in attempts:
        status, _, _ = await get(served.url + "/", authorization=basic(user, password))
        assert status == 401, (user, password)
    # Still cached: the good login does not run bcrypt again.
    before = served.auth.bcrypt_checks
    assert (await get(served.url + "/", authorization=basic("alice", "secret")))[0] == 200
    assert served.auth.bcrypt_checks == before


async def test_300_concurrent_logins_run_bcrypt_once(serve: Serve) -> None:
    served = await serve(f"basic_auth_users:\n  prometheus: {hashed(PASSWORD, cost=10)}\n")
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def login() -> int:
            headers = {"Authorization": basic("prometheus", PASSWORD)}
            async with session.get(served.url + "/-/healthy", headers=headers) as response:
                return response.status

        statuses = await asyncio.gather(*(login() for _ in range(300)))
    assert statuses == [200] * 300
    assert served.auth.bcrypt_checks == 1


async def test_a_flood_of_wrong_passwords_does_not_block_scrapes(serve: Serve) -> None:
    served = await serve(f"basic_auth_users:\n  prometheus: {hashed(PASSWORD, cost=10)}\n")
    good = basic("prometheus", PASSWORD)
    assert (await get(served.url + "/metrics", authorization=good))[0] == 200
    flood = [
        asyncio.create_task(
            get(served.url + "/metrics", authorization=basic("prometheus", f"guess{i}"))
        )
        for i in range(40)
    ]
    await asyncio.sleep(0.05)
    # bcrypt runs in threads: the event loop answers a logged-in scrape meanwhile.
    status, text, _ = await get(served.url + "/metrics", authorization=good)
    assert status == 200
    assert 'apibalance_balance_usd{account="labs",provider="datalabs"} 12.5' in text
    assert not all(task.done() for task in flood)
    # Beyond the checks the bcrypt threads work through in a moment: 429 at once.
    statuses = [result[0] for result in await asyncio.gather(*flood)]
    assert statuses.count(401) == min(40, served.auth.max_pending)
    assert set(statuses) <= {401, 429}


# More different wrong passwords than the login cache holds, then more while the client,
# logged in before, comes back: as a Prometheus scraping every 15 s would.
FIRST_WAVE = 1100
SECOND_WAVE = 500


def test_a_wrong_password_flood_never_locks_out_a_logged_in_client(tmp_path: Path) -> None:
    raise_file_limit()
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  prometheus: {hashed(PASSWORD, cost=10)}\n")
    good = basic("prometheus", PASSWORD)
    # Room for every connection: the point here is the logins, not the connection cap.
    with ExporterProcess(
        "--demo", "--web.config.file", str(web_config), "--web.max-connections", "4000"
    ) as exporter:
        assert http_get(exporter.port, "/-/healthy", good)[0] == 200
        statuses = password_flood(exporter.port, FIRST_WAVE)
        second: list[list[int | None]] = []
        flood = threading.Thread(
            target=lambda: second.append(
                password_flood(exporter.port, SECOND_WAVE, first=FIRST_WAVE)
            )
        )
        flood.start()
        during = []
        while flood.is_alive():
            during.append(http_get(exporter.port, "/-/healthy", good))
            time.sleep(0.05)
        flood.join()
        after = http_get(exporter.port, "/-/healthy", good)
    statuses += second[0]
    seconds = sorted(seconds for _, seconds in [*during, after])
    print(
        f"\nwrong-password flood of {FIRST_WAVE} then {SECOND_WAVE}: "
        f"{statuses.count(429)} refused at once (429), {statuses.count(401)} checked (401), "
        f"{statuses.count(None)} cut off; logged-in client during the second: "
        f"{len(during)} logins, {seconds[-1] * 1000:.0f} ms at most, "
        f"{after[1] * 1000:.0f} ms after"
    )
    assert set(statuses) <= {401, 429, None}
    # The queue of bcrypt checks is bounded: most wrong passwords are refused without one.
    assert statuses.count(429) > statuses.count(401)
    assert {status for status, _ in [*during, after]} == {200}
    # Generous bounds: the flood's connections cost the event loop some time to accept and
    # answer, but not the seconds of queueing behind bcrypt it was (its login pushed out of
    # the cache by the first wave, then checked again behind the second).
    assert seconds[len(seconds) // 2] < 1.0
    assert seconds[-1] < 5.0


# -- TLS ----------------------------------------------------------------------------------


async def test_a_tls_handshake_must_finish_in_time(
    serve: Serve, tmp_path: Path, ca: trustme.CA
) -> None:
    # Not yet a connection the cap counts: without a deadline, asyncio's is a minute.
    issue_server_cert(ca, tmp_path)
    served = await serve(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
        tls=True,
        flags=("--web.read-header-timeout", "300ms"),
    )
    port = int(served.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        assert await asyncio.wait_for(reader.read(), 10) == b""
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    assert loop.time() - started < 4.0  # 300 ms, and slack for a loaded machine


async def test_tls_serves_the_certificate_and_refuses_plain_http(
    serve: Serve, tmp_path: Path, ca: trustme.CA
) -> None:
    issue_server_cert(ca, tmp_path)
    served = await serve(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n", tls=True
    )
    status, text, _ = await get(served.url + "/metrics", ssl_context=client_context(ca))
    assert status == 200
    assert "apibalance_up" in text
    with pytest.raises(aiohttp.ClientError):
        await get(served.url.replace("https://", "http://") + "/metrics")
    # A client that does not trust the CA refuses the server.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(served.url + "/metrics")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_below_1_2_is_refused(serve: Serve, tmp_path: Path, ca: trustme.CA) -> None:
    issue_server_cert(ca, tmp_path)
    served = await serve(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n", tls=True
    )
    old_client = client_context(ca)
    old_client.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old_client.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(aiohttp.ClientError):
        await get(served.url + "/", ssl_context=old_client)
    new_client = client_context(ca)
    new_client.minimum_version = ssl.TLSVersion.TLSv1_2
    new_client.maximum_version = ssl.TLSVersion.TLSv1_2
    assert (await get(served.url + "/", ssl_context=new_client))[0] == 200


async def test_tls_and_basic_auth_together(serve: Serve, tmp_path: Path, ca: trustme.CA) -> None:
    issue_server_cert(ca, tmp_path)
    served = await serve(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: {hashed(PASSWORD)}\n"
        "http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n",
        tls=True,
    )
    context = client_context(ca)
    status, _, headers = await get(served.url + "/metrics", ssl_context=context)
    assert status == 401
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    status, _, headers = await get(
        served.url + "/metrics", ssl_context=context, authorization=basic("prometheus", PASSWORD)
    )
    assert status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000"


async def test_client_certificates(serve: Serve, tmp_path: Path, ca: trustme.CA) -> None:
    issue_server_cert(ca, tmp_path)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    served = await serve(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        "  client_allowed_sans: [prometheus.example]\n",
        tls=True,
    )
    allowed = ca.issue_cert("prometheus.example")
    other_name = ca.issue_cert("grafana.example")
    stranger = trustme.CA().issue_cert("prometheus.example")

    assert (await get(served.url + "/", ssl_context=client_context(ca, allowed)))[0] == 200
    status, _, _ = await get(served.url + "/", ssl_context=client_context(ca, other_name))
    assert status == 403
    for context in (client_context(ca), client_context(ca, stranger)):
        with pytest.raises(aiohttp.ClientError):
            await get(served.url + "/", ssl_context=context)


async def test_optional_client_certificates(serve: Serve, tmp_path: Path, ca: trustme.CA) -> None:
    issue_server_cert(ca, tmp_path)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    served = await serve(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n",
        tls=True,
    )
    assert (await get(served.url + "/", ssl_context=client_context(ca)))[0] == 200
    good = ca.issue_cert("prometheus.example")
    assert (await get(served.url + "/", ssl_context=client_context(ca, good)))[0] == 200
    stranger = trustme.CA().issue_cert("prometheus.example")
    with pytest.raises(aiohttp.ClientError):
        await get(served.url + "/", ssl_context=client_context(ca, stranger))


# -- probe --------------------------------------------------------------------------------


async def test_probe_collects_only_configured_accounts(serve: Serve) -> None:
    served = await serve(f"basic_auth_users:\n  prometheus: {hashed(PASSWORD)}\n")
    good = basic("prometheus", PASSWORD)
    status, text, _ = await get(served.url + "/probe?account=labs", authorization=good)
    assert status == 200
    found = samples(text)
    assert value(found, "apibalance_balance_usd", account="labs", provider="datalabs") == 12.5
    assert value(found, "apibalance_balance_usd", account="other", provider="datalabs") is None
    for query in ("account=nope", "", "target=http://evil.example/", "account=labs&target=x"):
        status, text, _ = await get(served.url + "/probe?" + query, authorization=good)
        assert status == 400, query
        assert "evil" not in text


# -- rotation on reload -------------------------------------------------------------------


async def test_api_key_file_is_read_again_on_reload(tmp_path: Path, simulator: Simulator) -> None:
    simulator.add("datalabs", SimAccount("old-key", balance=1.0))
    simulator.add("datalabs", SimAccount("new-key", balance=2.0))
    key_file = tmp_path / "labs.key"
    key_file.write_text("old-key\n")
    key_file.chmod(0o600)
    config = write_config(
        tmp_path,
        {
            "global": {"cache_ttl": "0s"},
            "accounts": [
                {
                    "name": "labs",
                    "provider": "datalabs",
                    "api_key_file": str(key_file),
                    "base_url": simulator.base_url("datalabs"),
                }
            ],
        },
    )
    port = free_port()
    _, running = await start(parse_args(["--config.file", str(config)]), [("127.0.0.1", port)])
    try:
        url = f"http://127.0.0.1:{port}"
        labs = {"account": "labs", "provider": "datalabs"}
        text = (await get(url + "/metrics"))[1]
        assert value(samples(text), "apibalance_balance_usd", **labs) == 1.0
        key_file.write_text("new-key\n")
        assert (await get(url + "/-/reload", method="POST"))[0] == 200
        text = (await get(url + "/metrics"))[1]
        assert value(samples(text), "apibalance_balance_usd", **labs) == 2.0
        seen = [r for r in simulator.requests if r.provider == "datalabs"]
        assert "new-key" in str(seen[-1].headers) + seen[-1].body.decode()
        assert "old-key" not in str(seen[-1].headers) + seen[-1].body.decode()
    finally:
        await running.close()


async def test_certificate_and_users_are_renewed_on_reload(
    serve: Serve, tmp_path: Path, ca: trustme.CA
) -> None:
    first = issue_server_cert(ca, tmp_path)
    served = await serve(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: {hashed('old')}\n",
        tls=True,
    )
    context = client_context(ca)

    async def served_certificate() -> bytes:
        host, port = served.url.removeprefix("https://").split(":")
        _, writer = await asyncio.open_connection(host, int(port), ssl=context)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        await writer.wait_closed()
        assert isinstance(der, bytes)
        return der

    def der(cert: trustme.LeafCert) -> bytes:
        return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())

    assert await served_certificate() == der(first)
    second = issue_server_cert(ca, tmp_path)
    served.web_config.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: {hashed('new')}\n"
    )
    reload = await get(
        served.url + "/-/reload",
        method="POST",
        ssl_context=context,
        authorization=basic("prometheus", "old"),
    )
    assert reload[0] == 200, reload[1]
    assert await served_certificate() == der(second)
    assert (
        await get(served.url + "/", ssl_context=context, authorization=basic("prometheus", "old"))
    )[0] == 401
    assert (
        await get(served.url + "/", ssl_context=context, authorization=basic("prometheus", "new"))
    )[0] == 200


async def test_a_bad_web_config_on_reload_keeps_the_running_one(serve: Serve) -> None:
    served = await serve(f"basic_auth_users:\n  prometheus: {hashed(PASSWORD)}\n")
    good = basic("prometheus", PASSWORD)
    served.web_config.write_text("basic_auth_users:\n  prometheus: plaintext-password\n")
    status, text, _ = await get(served.url + "/-/reload", method="POST", authorization=good)
    assert status == 500
    assert f"{served.web_config}:2: basic_auth_users.prometheus: not a bcrypt hash" in text
    assert "plaintext-password" not in text
    status, text, _ = await get(served.url + "/metrics", authorization=good)
    assert status == 200
    assert value(samples(text), "apibalance_config_last_reload_successful") == 0.0
    # Turning TLS on needs a restart: refused, not half-applied.
    served.web_config.write_text("tls_server_config:\n  cert_file: a\n  key_file: b\n")
    status, text, _ = await get(served.url + "/-/reload", method="POST", authorization=good)
    assert status == 500


# -- what a client can hold before it logs in --------------------------------------------


def test_unfinished_request_heads_cannot_exhaust_memory() -> None:
    raise_file_limit()
    with ExporterProcess("--demo") as exporter:
        before = exporter.rss_bytes()
        sockets = connect(exporter.port, 300, UNFINISHED_HEAD)
        try:
            time.sleep(0.5)
            during = exporter.rss_bytes()
            status = http_status(exporter.port)
        finally:
            close_all(sockets)
        log = exporter.log()
    print(f"\n300 unfinished 1 MiB heads: RSS {before >> 20} MiB before, {during >> 20} MiB during")
    assert status == 200
    # Heads are limited to 4 KiB a line and 32 lines: megabytes here, not hundreds.
    assert during - before < 48 << 20
    # Bad requests are the client's problem: no traceback, no error line for each.
    assert "Traceback" not in log
    assert "Error handling request" not in log


def test_unfinished_heads_within_the_line_limits_are_bounded_in_memory() -> None:
    raise_file_limit()
    with ExporterProcess("--demo") as exporter:
        time.sleep(1)  # the demo's first collection, done before the figures are taken
        before = exporter.rss_bytes()
        sockets, peak = connect_watching_memory(
            exporter.port, 1000, UNFINISHED_HEAD_OF_ALLOWED_LINES, exporter.rss_bytes
        )
        try:
            status = http_status(exporter.port, "/-/healthy")
        finally:
            close_all(sockets)
        log = exporter.log()
    print(
        f"\n1000 unfinished heads of 31 lines of 4 KB: RSS {before / 2**20:.1f} MiB before, "
        f"{peak / 2**20:.1f} MiB at the peak"
    )
    assert status == 200
    # 124 KB a head, and up to 512 connections: 60 MiB of headers, twice that in memory,
    # without a bound on heads in all.
    assert peak - before < 24 << 20
    assert "Traceback" not in log


def test_a_request_head_over_16_kib_is_refused_and_ordinary_ones_pass() -> None:
    cookie = "Cookie: " + "c" * 3990 + "\r\n"  # a browser's, for other sites on localhost
    with ExporterProcess("--demo") as exporter:
        answers = []
        for cookies in (3, 5):
            sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=10)
            sock.sendall(f"GET /-/healthy HTTP/1.1\r\nHost: x\r\n{cookie * cookies}\r\n".encode())
            answers.append(sock.recv(40))
            sock.close()
        # Nor is a request body (this one's request is refused: 405).
        sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=10)
        body = b"b" * 40_000
        sock.sendall(
            b"POST /-/healthy HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)
        )
        after_body = sock.recv(65536)
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        while b"Healthy" not in after_body:
            chunk = sock.recv(65536)
            if not chunk:
                break
            after_body += chunk
        sock.close()
        # Pipelined requests are no head too large, however many arrive at once.
        sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=10)
        sock.sendall(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n" * 1000)
        received = b""
        while received.count(b"HTTP/1.1 200") < 1000:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        sock.close()
    assert answers[0].startswith(b"HTTP/1.1 200")
    assert answers[1].startswith(b"HTTP/1.1 431")
    assert received.count(b"HTTP/1.1 200") == 1000
    assert after_body.startswith(b"HTTP/1.1 405")
    assert b"HTTP/1.1 200" in after_body


def test_unfinished_heads_are_bounded_in_all_whatever_the_connection_cap() -> None:
    raise_file_limit()
    with ExporterProcess("--demo", "--web.max-connections", "3000") as exporter:
        time.sleep(1)  # the demo's first collection, done before the figures are taken
        before = exporter.rss_bytes()
        # Heads of 12 KB each, under the limit on one head: 24 MB in all.
        head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + (b"X: " + b"v" * 3995 + b"\r\n") * 3
        sockets, peak = connect_watching_memory(exporter.port, 2000, head, exporter.rss_bytes)
        try:
            status = http_status(exporter.port, "/-/healthy")
            cut_off = sum(closed_by_server(sock) for sock in sockets)
        finally:
            close_all(sockets)
    print(
        f"\n2000 unfinished heads of 12 KB: RSS {before / 2**20:.1f} MiB before, "
        f"{peak / 2**20:.1f} MiB at the peak; {cut_off} oldest cut off"
    )
    assert status == 200
    assert peak - before < 24 << 20
    assert cut_off > 1000


def test_a_request_head_must_arrive_in_time() -> None:
    with ExporterProcess("--demo", "--web.read-header-timeout", "1s") as exporter:
        idle = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
        slow = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        for sock in (idle, slow):
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(1) == b""
            sock.close()
        elapsed = time.monotonic() - started
    assert elapsed < 4.0  # 1 s, and slack for a loaded machine (not the hour aiohttp allows)


def test_a_connection_flood_pushes_out_idle_connections_not_scrapers() -> None:
    with ExporterProcess("--demo", "--web.max-connections", "20") as exporter:
        sockets = connect(exporter.port, 100)
        try:
            assert http_status(exporter.port) == 200
            time.sleep(0.3)
            still_open = [sock for sock in sockets if not closed_by_server(sock)]
        finally:
            close_all(sockets)
    # The cap holds: the longest idle were closed to let newer ones, and the scrape, in.
    assert len(still_open) <= 20


def test_over_the_cap_with_every_connection_busy_logged_in_a_newcomer_is_refused_at_once(
    tmp_path: Path,
) -> None:
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  prometheus: {hashed(PASSWORD)}\n")
    # An upstream that takes the connection and never answers keeps two scrapes busy.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        upstream = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config = write_config(
            tmp_path,
            {"accounts": [account("stuck", "datalabs", "stuck-key", upstream, timeout="30s")]},
        )
        with ExporterProcess(
            "--config.file",
            str(config),
            "--web.config.file",
            str(web_config),
            "--web.max-connections",
            "2",
        ) as exporter:
            busy = []
            for _ in range(2):
                sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=20)
                sock.sendall(
                    "GET /probe?account=stuck HTTP/1.1\r\nHost: x\r\n"
                    "X-Prometheus-Scrape-Timeout-Seconds: 4\r\n"
                    f"Authorization: {basic('prometheus', PASSWORD)}\r\n\r\n".encode()
                )
                busy.append(sock)
            time.sleep(0.5)  # for the exporter to read both heads: busy from then on
            newcomer = socket.create_connection(("127.0.0.1", exporter.port), timeout=20)
            answer = newcomer.recv(200)
            # At once: before the scrapes the busy ones wait for have answered them.
            busy_answered_first = any(closed_by_server(sock) for sock in busy)
            first_busy = busy[0].recv(12)
            close_all([*busy, newcomer])
    assert answer.startswith(b"HTTP/1.1 503")
    assert b"too many connections" in answer
    assert not busy_answered_first
    # The busy ones were not pushed out: they got their answer (their scrape timed out).
    assert first_busy == b"HTTP/1.1 200"


def test_logins_waiting_for_bcrypt_make_room_for_a_logged_in_client(tmp_path: Path) -> None:
    web_config = tmp_path / "web.yml"
    # A slow hash keeps two wrong guesses busy long enough to try a third connection.
    web_config.write_text(f"basic_auth_users:\n  prometheus: {hashed(PASSWORD, cost=13)}\n")
    good = basic("prometheus", PASSWORD)
    with ExporterProcess(
        "--demo", "--web.config.file", str(web_config), "--web.max-connections", "2"
    ) as exporter:
        assert http_get(exporter.port, "/-/healthy", good, timeout=30)[0] == 200
        guesses = []
        for guess in ("guess-1", "guess-2"):
            sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=30)
            sock.sendall(
                f"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: {basic('prometheus', guess)}"
                "\r\n\r\n".encode()
            )
            guesses.append(sock)
        time.sleep(0.3)  # for the exporter to read both heads: busy from then on
        status = http_get(exporter.port, "/-/healthy", good, timeout=30)[0]
        second_checked_first = closed_by_server(guesses[1])
        oldest_cut_off = reset_by_server(guesses[0])
        close_all(guesses)
    assert status == 200
    # Let in while both wrong guesses were still waiting for bcrypt: the oldest made room.
    assert not second_checked_first
    assert oldest_cut_off


def test_clients_without_the_password_cannot_crowd_out_prometheus(tmp_path: Path) -> None:
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  prometheus: {hashed(PASSWORD)}\n")
    good = basic("prometheus", PASSWORD)
    with ExporterProcess(
        "--demo", "--web.config.file", str(web_config), "--web.max-connections", "40"
    ) as exporter:
        # More connections than the cap, each thousands of requests deep, never reading, and
        # more coming to take any slot that comes free.
        flood = PipelineFlood(
            exporter.port,
            b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n",
            6000,
            count=60,
            limit=400,
            every=0.01,
        )
        flood.start()
        try:
            time.sleep(0.5)
            scrapes = []
            for _ in range(5):
                scrapes.append(http_get(exporter.port, "/metrics", good, timeout=10))
                time.sleep(0.2)
        finally:
            flood.stop()
        rss = exporter.rss_bytes()
    seconds = sorted(seconds for _, seconds in scrapes)
    print(
        f"\n{len(flood.sockets)} connections pipelining 6000 requests without the password, "
        f"never reading: scrapes {[status for status, _ in scrapes]}, "
        f"slowest {seconds[-1] * 1000:.0f} ms, RSS {rss >> 20} MiB"
    )
    assert [status for status, _ in scrapes] == [200] * 5


def test_a_client_that_does_not_read_its_answers_is_cut_off() -> None:
    with ExporterProcess("--demo", "--web.write-timeout", "1s", "--log.level", "debug") as exporter:
        # Megabytes of answers: more than the kernel's buffers hold for a client.
        stuck = pipeline_without_reading(
            exporter.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 500
        )
        deadline = time.monotonic() + 15
        while not reset_by_server(stuck) and time.monotonic() < deadline:
            time.sleep(0.1)
        cut_off = reset_by_server(stuck)
        stuck.close()
        log = exporter.log()
    assert cut_off
    assert "does not read its answers" in log


def test_stalled_connections_make_room_for_a_scraper() -> None:
    # No basic auth, so every connection got past the checks; the write timeout is long, so
    # only the order in which connections make room lets the scraper in.
    with ExporterProcess(
        "--demo", "--web.max-connections", "10", "--web.write-timeout", "60s"
    ) as exporter:
        # Scrapes of 66 KB each: a connection's kernel buffers are full after a few dozen.
        flood = PipelineFlood(
            exporter.port,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            500,
            count=10,
            limit=200,
            every=0.05,
        )
        flood.start()
        try:
            deadline = time.monotonic() + 15
            statuses = []
            while time.monotonic() < deadline:
                time.sleep(0.5)
                statuses.append(http_status(exporter.port, "/-/healthy", timeout=5))
                if statuses[-1] == 200:
                    break
        finally:
            flood.stop()
    # 503 while the flood's answers still fit the kernel's buffers; let in once they stall.
    assert statuses[-1] == 200, statuses


def test_a_client_hanging_up_frees_its_scrape_slot(tmp_path: Path) -> None:
    # An upstream that takes the connection and never answers: the scrape would wait 30 s.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        upstream = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config = write_config(
            tmp_path,
            {"accounts": [account("stuck", "datalabs", "stuck-key", upstream, timeout="30s")]},
        )
        with ExporterProcess("--config.file", str(config), "--web.max-requests", "1") as exporter:
            impatient = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
            impatient.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.5)
            impatient.close()  # the only scrape slot would be taken for 30 s more
            time.sleep(0.3)
            prometheus = socket.create_connection(("127.0.0.1", exporter.port), timeout=10)
            prometheus.sendall(
                b"GET /probe?account=stuck HTTP/1.1\r\nHost: x\r\n"
                b"X-Prometheus-Scrape-Timeout-Seconds: 2\r\n\r\n"
            )
            answer = prometheus.recv(12)
            prometheus.close()
    # Its own scrape times out within its budget (an up 0), but it is let in: not a 503.
    assert answer == b"HTTP/1.1 200"


def test_a_malformed_request_is_one_debug_line_not_a_traceback() -> None:
    with ExporterProcess("--demo", "--log.level", "debug") as exporter:
        sock = socket.create_connection(("127.0.0.1", exporter.port), timeout=5)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 9000 + b"\r\n\r\n")
        assert sock.recv(12) == b"HTTP/1.0 400"
        sock.close()
        time.sleep(0.2)
        log = exporter.log()
    lines = [line for line in log.splitlines() if "bad request" in line]
    assert len(lines) == 1
    assert "level=debug" in lines[0]
    assert "Traceback" not in log


def test_connections_that_never_start_tls_cannot_spin_the_accept_loop(
    tmp_path: Path, ca: trustme.CA
) -> None:
    issue_server_cert(ca, tmp_path)
    web_config = tmp_path / "web.yml"
    web_config.write_text(
        f"tls_server_config:\n  cert_file: {tmp_path / 'server.crt'}\n"
        f"  key_file: {tmp_path / 'server.key'}\n"
    )
    context = client_context(ca)
    # More connections than the process may open files: TCP only, never a TLS hello.
    with ExporterProcess(
        "--demo", "--web.config.file", str(web_config), file_limit=256
    ) as exporter:
        time.sleep(1)  # the demo's first collection, done before the figures are taken
        sockets = connect(exporter.port, 400)
        try:
            time.sleep(1)
            cpu = exporter.cpu_share(3)
            open_files = len(os.listdir(f"/proc/{exporter.pid}/fd"))
            scrape_started = time.monotonic()
            connection = http.client.HTTPSConnection(
                "localhost", exporter.port, timeout=10, context=context
            )
            try:
                connection.request("GET", "/probe?account=anticaptcha-main")
                status: int | None = connection.getresponse().status
            except OSError:
                status = None
            finally:
                connection.close()
            scrape_seconds = time.monotonic() - scrape_started
        finally:
            close_all(sockets)
        log = exporter.log()
    print(
        f"\n400 connections that never start TLS, 256 open files: exporter CPU {cpu:.0%}, "
        f"{open_files} files open, TLS scrape {status} in {scrape_seconds * 1000:.0f} ms"
    )
    assert status == 200, log[-2000:]
    assert scrape_seconds < 5.0
    # The cap counts connections in their handshake: it keeps descriptors free for accept().
    assert open_files < 256
    # Idle but for the flood's connections: not accept() failing in a loop.
    assert cpu < 0.1, log[-2000:]
    assert "Traceback" not in log


def test_out_of_descriptors_accepting_backs_off_instead_of_spinning(tmp_path: Path) -> None:
    # 20 open files, 7 of them the process's own: the cap's floor of 16 connections is more
    # than the descriptors left, so accept() fails for as long as the connections stay.
    config = write_config(
        tmp_path, {"accounts": [account("one", "datalabs", "key", "http://127.0.0.1:9")]}
    )
    with ExporterProcess("--config.file", str(config), file_limit=20) as exporter:
        time.sleep(1)
        sockets = connect(exporter.port, 30)
        try:
            time.sleep(1)
            cpu = exporter.cpu_share(3)
        finally:
            close_all(sockets)
        log = exporter.log()
    print(f"\nout of descriptors with 30 connections waiting: exporter CPU {cpu:.0%}")
    assert "cannot accept connections" in log
    assert cpu < 0.1, log[-2000:]


def test_the_connection_cap_fits_under_the_open_files_limit() -> None:
    assert fit_to_file_limit(512, 64, 1_048_576) == 512
    assert fit_to_file_limit(1024, 64, 1024) == 1024 - 128 - 64
    assert fit_to_file_limit(512, 1000, 1024) == 16  # never so low that one client fills it
    assert fit_to_file_limit(8, 1000, 1024) == 8  # nor above what was asked


def test_accept_errors_are_logged_once_in_a_while_not_each_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # What asyncio reports, in a tight loop, when accept() finds no descriptor left.
    loop = asyncio.new_event_loop()
    handler = AcceptErrorFilter()
    try:
        with caplog.at_level(logging.DEBUG):
            for _ in range(10_000):
                handler(
                    loop,
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(errno.EMFILE, "Too many open files"),
                    },
                )
    finally:
        loop.close()
    assert [record.getMessage() for record in caplog.records] == ["cannot accept connections"]
    assert not any(record.exc_info for record in caplog.records)


def test_out_of_file_descriptors_the_exporter_still_serves_and_logs_little() -> None:
    # 400 idle connections against a limit of 256 open files: the cap is lowered below the
    # limit, idle connections make way, and a scrape still gets in. The scrape asks one healthy
    # account: the demo's flaky accounts may take up to their 5 s timeout by design.
    with ExporterProcess("--demo", file_limit=256) as exporter:
        sockets = connect(exporter.port, 400)
        try:
            started = time.monotonic()
            status = http_status(exporter.port, "/probe?account=anticaptcha-main", timeout=10)
            elapsed = time.monotonic() - started
            time.sleep(1)
        finally:
            close_all(sockets)
        log = exporter.log()
    assert status == 200, log[-2000:]
    assert elapsed < 5.0, log[-2000:]
    assert "lowering --web.max-connections" in log
    assert "Traceback" not in log
    assert len(log.splitlines()) < 20, log[-2000:]
