"""--web.config.file: the exporter-toolkit format, every problem named with its place."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
import trustme

from exporter.configfile import ConfigError
from exporter.webconfig import WebConfig, load_web_config
from tests.helpers import integration

# Password "secret", as `htpasswd -nBC 10 prometheus` writes it (the $2y$ prefix).
HTPASSWD_HASH = "$2y$10$Z3fJiixd0sMRHftMILWVY.uVxVTg4qyuM9BEM64yNUhodzIp0a1W."


def hash_of(password: bytes, cost: int = 4) -> str:
    return bcrypt.hashpw(password, bcrypt.gensalt(cost)).decode()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def certs(tmp_path: Path, ca: trustme.CA) -> Path:
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    return tmp_path


def write(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_web_config(path)
    return info.value.lines


def test_a_full_toolkit_file_loads(certs: Path) -> None:
    path = write(
        certs,
        "tls_server_config:\n"
        "  cert_file: server.crt\n"
        "  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n"
        "  client_ca_file: ca.crt\n"
        "  client_allowed_sans: [prometheus.example]\n"
        "  min_version: TLS12\n"
        "  max_version: TLS13\n"
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n"
        "  prefer_server_cipher_suites: true\n"
        "http_server_config:\n"
        "  http2: true\n"
        "  headers:\n"
        "    Strict-Transport-Security: max-age=31536000\n"
        "    x-content-type-options: nosniff\n"
        "basic_auth_users:\n"
        f"  prometheus: {HTPASSWD_HASH}\n"
        f"  grafana: {hash_of(b'x')}\n",
    )
    config = load_web_config(path)
    assert config.ssl_context is not None
    assert config.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert config.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert set(config.users) == {"prometheus", "grafana"}
    assert config.headers == {
        "Strict-Transport-Security": "max-age=31536000",
        "X-Content-Type-Options": "nosniff",
    }
    assert config.allowed_sans == {"prometheus.example"}
    assert config.summary() == (
        f"{path}: OK, TLS (RequireAndVerifyClientCert) and basic auth (2 user(s))"
    )


def test_an_empty_file_means_no_tls_and_no_auth(tmp_path: Path) -> None:
    config = load_web_config(write(tmp_path, ""))
    assert config == WebConfig(source=str(tmp_path / "web.yml"))
    assert not config.tls


def test_every_problem_is_listed_with_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tls_server_config:\n"
        "  cert_file: missing.crt\n"
        "  key_file: missing.key\n"
        "basic_auth_users:\n"
        "  alice: not-a-hash\n"
        "  bob: $2b$03$abcdefghijklmnopqrstuuJ0gHkzEjG3UJ4yqkbQ4YCGHaTYR4tVe\n"
        "  'carol:x': " + hash_of(b"x") + "\n"
        "basic_auth_user: {}\n",
    )
    assert problems(path) == [
        f"{path}:2: tls_server_config.cert_file: no such file: {tmp_path / 'missing.crt'}",
        f"{path}:3: tls_server_config.key_file: no such file: {tmp_path / 'missing.key'}",
        f"{path}:5: basic_auth_users.alice: not a bcrypt hash (make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')",
        f"{path}:6: basic_auth_users.bob: bcrypt cost 3 is outside 4..31",
        f"{path}:7: basic_auth_users.carol:x: a user name cannot contain ':' (basic auth splits user and password there)",
        f"{path}:8: basic_auth_user: unknown key (did you mean 'basic_auth_users'?)",
    ]


def test_no_secret_in_messages(tmp_path: Path) -> None:
    secret_hash = "$2b$10$" + "s" * 52  # one character short: not a hash, but private
    path = write(tmp_path, f"basic_auth_users:\n  alice: '{secret_hash}'\n")
    assert not any(secret_hash in line for line in problems(path))


@pytest.mark.parametrize(
    ("tls", "message"),
    [
        (
            "min_version: TLS11",
            "4: tls_server_config.min_version: TLS11: TLS below 1.2 is not accepted",
        ),
        (
            "min_version: TLS10",
            "4: tls_server_config.min_version: TLS10: TLS below 1.2 is not accepted",
        ),
        (
            "min_version: TLS13\n  max_version: TLS12",
            "5: tls_server_config.max_version: TLS12 is below min_version TLS13",
        ),
        (
            "min_version: SSL3",
            "4: tls_server_config.min_version: Input should be 'TLS10', 'TLS11', 'TLS12' or 'TLS13'",
        ),
        (
            "client_auth_type: VerifyClientCertIfGiven",
            "4: tls_server_config.client_auth_type: VerifyClientCertIfGiven needs client_ca_file",
        ),
        (
            "client_ca_file: ca.crt",
            "4: tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert",
        ),
        (
            "client_auth_type: RequireAnyClientCert",
            "4: tls_server_config.client_auth_type: RequireAnyClientCert (a certificate taken without verification) is not supported",
        ),
        (
            "client_auth_type: Sometimes",
            "4: tls_server_config.client_auth_type: Input should be 'NoClientCert'",
        ),
        (
            "client_allowed_sans: [a]",
            "4: tls_server_config.client_allowed_sans: needs client_auth_type RequireAndVerifyClientCert",
        ),
        (
            "cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]",
            "4: tls_server_config.cipher_suites: unknown or insecure: TLS_RSA_WITH_RC4_128_SHA",
        ),
        (
            "curve_preferences: [X25519]",
            "4: tls_server_config.curve_preferences: not supported by this exporter",
        ),
        (
            "cert: inline",
            "4: tls_server_config.cert: inline PEM is not supported by this exporter; use cert_file",
        ),
        (
            "cert_fille: x",
            "4: tls_server_config.cert_fille: unknown key (did you mean 'cert_file'?)",
        ),
    ],
)
def test_tls_problems(certs: Path, tls: str, message: str) -> None:
    path = write(
        certs, f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  {tls}\n"
    )
    found = problems(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:{message}"), found[0]


def test_certificate_and_key_must_match(certs: Path, ca: trustme.CA) -> None:
    ca.issue_cert("other").private_key_pem.write_to_path(str(certs / "other.key"))
    path = write(certs, "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n")
    assert problems(path) == [
        f"{path}:2: tls_server_config.cert_file: cannot load certificate and key: KEY_VALUES_MISMATCH"
    ]


def test_key_file_is_required(certs: Path) -> None:
    path = write(certs, "tls_server_config:\n  cert_file: server.crt\n")
    assert problems(path) == [f"{path}:2: tls_server_config: key_file is required"]


def test_a_certificate_that_is_not_pem(certs: Path) -> None:
    (certs / "garbage.crt").write_text("hello\n")
    path = write(certs, "tls_server_config:\n  cert_file: garbage.crt\n  key_file: server.key\n")
    [line] = problems(path)
    assert line.startswith(
        f"{path}:2: tls_server_config.cert_file: cannot load certificate and key:"
    )


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (
            "Server: nginx",
            "3: http_server_config.headers.Server: cannot be set; allowed: Strict-Transport-Security, X-Content-Type-Options",
        ),
        (
            "X-Frame-Options: allow",
            "3: http_server_config.headers.X-Frame-Options: must be one of deny, sameorigin",
        ),
        ("Content-Type: text/html", "3: http_server_config.headers.Content-Type: cannot be set"),
    ],
)
def test_only_the_toolkits_headers_can_be_set(tmp_path: Path, headers: str, message: str) -> None:
    path = write(tmp_path, f"http_server_config:\n  headers:\n    {headers}\n")
    [line] = problems(path)
    assert line.startswith(f"{path}:{message}"), line


def test_duplicate_users_are_an_error(tmp_path: Path) -> None:
    h = hash_of(b"x")
    path = write(tmp_path, f"basic_auth_users:\n  alice: {h}\n  alice: {h}\n")
    assert problems(path) == [
        f"{path}:3: basic_auth_users.alice: duplicate key (YAML would silently keep only the last)"
    ]


@integration
def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_config_check_reports_both_files(tmp_path: Path) -> None:
    web = write(
        tmp_path,
        "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  min_version: TLS10\n",
    )
    config = tmp_path / "apibalance.yml"
    config.write_text("accounts:\n  - name: x\n    provider: nope\n")
    result = run_cli("--config.check", "--config.file", str(config), "--web.config.file", str(web))
    assert result.returncode == 1
    assert f"{config}:3: accounts[0].provider: unknown provider 'nope'" in result.stderr
    assert (
        f"{web}:4: tls_server_config.min_version: TLS10: TLS below 1.2 is not accepted"
        in result.stderr
    )


def test_config_check_accepts_a_good_web_config(tmp_path: Path) -> None:
    web = write(tmp_path, f"basic_auth_users:\n  prometheus: {HTPASSWD_HASH}\n")
    result = run_cli("--config.check", "--demo", "--web.config.file", str(web))
    assert result.returncode == 0, result.stderr
    assert f"{web}: OK, basic auth (1 user(s))" in result.stdout


def test_start_up_refuses_a_bad_web_config(tmp_path: Path) -> None:
    web = write(tmp_path, "basic_auth_users:\n  alice: plaintext\n")
    result = run_cli("--demo", "--web.config.file", str(web), "--web.listen-address", "127.0.0.1:0")
    assert result.returncode == 1
    assert f"{web}:2: basic_auth_users.alice: not a bcrypt hash" in result.stderr
    assert "plaintext" not in result.stderr


def test_start_up_refuses_a_missing_web_config(tmp_path: Path) -> None:
    result = run_cli("--demo", "--web.config.file", str(tmp_path / "nope.yml"))
    assert result.returncode == 1
    assert (
        f"{tmp_path / 'nope.yml'}: cannot read web config file: No such file or directory"
        in result.stderr
    )


TESTDATA = Path(__file__).parent / "testdata"


def test_a_refused_setting_does_not_hide_missing_files() -> None:
    path = TESTDATA / "invalid-web-old-tls-and-missing-files.yml"
    assert problems(path) == [
        f"{path}:2: tls_server_config.cert_file: no such file: {TESTDATA / 'missing.crt'}",
        f"{path}:3: tls_server_config.key_file: no such file: {TESTDATA / 'missing.key'}",
        f"{path}:4: tls_server_config.min_version: TLS10: TLS below 1.2 is not accepted",
    ]


def test_a_refused_setting_does_not_hide_a_bad_certificate(certs: Path) -> None:
    (certs / "server.crt").write_text("not a certificate\n")
    path = write(
        certs,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  max_version: TLS12\n  min_version: TLS13\n",
    )
    lines = problems(path)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{path}:2: tls_server_config.cert_file: cannot load certificate")
    assert lines[1] == f"{path}:4: tls_server_config.max_version: TLS12 is below min_version TLS13"
