"""`--web.config.file`: TLS and basic auth, in the Prometheus exporter-toolkit format.

    tls_server_config:
      cert_file: server.crt            # paths are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12
    http_server_config:
      headers:
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:
      prometheus: $2y$10$...           # htpasswd -nBC 10 "" | tr -d ':\\n'

Every problem is reported at once with its file, line and key, as for the main config.
Secrets (private keys, password hashes) never appear in a message.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from exporter.configfile import (
    ConfigError,
    Loc,
    Locator,
    Problem,
    read_config_file,
    read_yaml,
    validation_problems,
)
from exporter.hints import did_you_mean

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
TLSVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
VERIFY_MODES: Mapping[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}

# Go's names (as the toolkit takes them) for the TLS 1.2 suites OpenSSL also offers. As in
# Go, the list does not apply to TLS 1.3, whose suites are not configurable.
GO_CIPHER_SUITES: Mapping[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}

# The toolkit allows only these response headers, some with a fixed set of values.
ALLOWED_HEADERS: Mapping[str, frozenset[str] | None] = {
    "Strict-Transport-Security": None,
    "X-Content-Type-Options": frozenset({"nosniff"}),
    "X-Frame-Options": frozenset({"deny", "sameorigin"}),
    "X-XSS-Protection": None,
    "Content-Security-Policy": None,
}

# A bcrypt hash as htpasswd -B, Go and Python write it: version, two-digit cost, 53 characters.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(?P<cost>\d\d)\$[./A-Za-z0-9]{53}")
BCRYPT_MIN_COST, BCRYPT_MAX_COST = 4, 31


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TLSServerSettings(_Strict):
    cert_file: str | None = None
    key_file: str | None = None
    # Inline PEM (newer toolkits); kept as known keys so the error says what to use instead.
    cert: str | None = None
    key: SecretStr | None = None
    client_ca: str | None = None
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: str | None = None
    client_allowed_sans: list[str] | None = None
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    cipher_suites: list[str] | None = None
    curve_preferences: list[str] | None = None
    prefer_server_cipher_suites: bool = True


class HTTPServerSettings(_Strict):
    # aiohttp serves HTTP/1.1 only; the key is accepted so toolkit files load unchanged.
    http2: bool = True
    headers: dict[str, str] = {}


class WebConfigFile(_Strict):
    tls_server_config: TLSServerSettings | None = None
    http_server_config: HTTPServerSettings | None = None
    basic_auth_users: dict[str, SecretStr] | None = None


@dataclass(frozen=True)
class WebConfig:
    """A validated web config: a ready TLS context (or none), users and response headers."""

    source: str
    ssl_context: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    allowed_sans: frozenset[str] = frozenset()
    # Resolved certificate and key paths, so a reload can load a renewed pair into the live
    # TLS context (listening sockets keep the context they were opened with).
    cert_paths: tuple[Path, Path] | None = None
    settings: WebConfigFile = field(default_factory=WebConfigFile)

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None

    def summary(self) -> str:
        parts = []
        if self.ssl_context is not None:
            assert self.settings.tls_server_config is not None
            parts.append(f"TLS ({self.settings.tls_server_config.client_auth_type})")
        if self.users:
            parts.append(f"basic auth ({len(self.users)} user(s))")
        return f"{self.source}: OK, {' and '.join(parts) or 'no TLS, no basic auth'}"


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and check a web config file; raise `ConfigError` listing every problem."""
    text = read_config_file(path, "web config file")
    return parse_web_config(text, source=str(path), base_dir=Path(path).parent)


def parse_web_config(
    text: str, *, source: str = "<web config>", base_dir: Path | None = None
) -> WebConfig:
    data, locator = read_yaml(text, source)
    problems = list(locator.duplicate_keys())
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem((), "the web config must be a mapping", 1)])
    # Sections are validated one by one, so a typo in one still lets the others be checked.
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key not in SECTIONS:
            hint = did_you_mean(str(key), SECTIONS)
            problems.append(locator.problem((str(key),), f"unknown key{hint}"))
            continue
        try:
            sections[key] = getattr(WebConfigFile.model_validate({key: value}), key)
        except ValidationError as error:
            problems.extend(validation_problems(error, (), locator, model=WebConfigFile))
    settings = WebConfigFile(**sections)
    tls = settings.tls_server_config
    tls_problems = _tls_problems(tls) if tls is not None else []
    for loc, message in tls_problems:
        problems.append(locator.problem(("tls_server_config", *loc), message))
    http = settings.http_server_config
    for loc, message in _header_problems(http.headers) if http is not None else ():
        problems.append(locator.problem(("http_server_config", "headers", *loc), message))

    users: dict[str, bytes] = {}
    for name, hashed in (settings.basic_auth_users or {}).items():
        problem = _user_problem(name, hashed.get_secret_value())
        if problem:
            problems.append(locator.problem(("basic_auth_users", name), problem))
        else:
            users[name] = hashed.get_secret_value().encode()

    headers = {}
    if settings.http_server_config is not None:
        canonical = {name.lower(): name for name in ALLOWED_HEADERS}
        headers = {
            canonical[k.lower()]: v
            for k, v in settings.http_server_config.headers.items()
            if k.lower() in canonical
        }

    context = None
    if tls is not None and "tls_server_config" in sections:
        # The files are checked even when a setting is refused, so one run shows both.
        context, file_problems = _ssl_context(
            tls, base_dir or Path(), locator, settings_ok=not tls_problems
        )
        problems.extend(file_problems)
    if problems:
        raise ConfigError(source, problems)
    return WebConfig(
        source=source,
        ssl_context=context,
        users=users,
        headers=headers,
        allowed_sans=frozenset(tls.client_allowed_sans or ()) if tls else frozenset(),
        cert_paths=_cert_paths(tls, base_dir or Path()) if tls else None,
        settings=settings,
    )


SECTIONS = ("tls_server_config", "http_server_config", "basic_auth_users")


def _tls_problems(tls: TLSServerSettings) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for inline, instead in (
        ("cert", "cert_file"),
        ("key", "key_file"),
        ("client_ca", "client_ca_file"),
    ):
        if getattr(tls, inline) is not None:
            problems.append(
                ((inline,), f"inline PEM is not supported by this exporter; use {instead}")
            )
    if tls.curve_preferences is not None:
        problems.append(
            (("curve_preferences",), "not supported by this exporter (OpenSSL's defaults apply)")
        )
    for key in ("cert_file", "key_file"):
        if not getattr(tls, key):
            problems.append(((), f"{key} is required"))
    if TLS_VERSIONS[tls.min_version] < ssl.TLSVersion.TLSv1_2:
        problems.append((("min_version",), f"{tls.min_version}: TLS below 1.2 is not accepted"))
    if TLS_VERSIONS[tls.max_version] < TLS_VERSIONS[tls.min_version]:
        problems.append(
            (("max_version",), f"{tls.max_version} is below min_version {tls.min_version}")
        )
    auth = tls.client_auth_type
    if auth in ("RequestClientCert", "RequireAnyClientCert"):
        problems.append(
            (
                ("client_auth_type",),
                f"{auth} (a certificate taken without verification) is not supported; use "
                "VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file",
            )
        )
    if auth in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert") and not tls.client_ca_file:
        problems.append((("client_auth_type",), f"{auth} needs client_ca_file"))
    if tls.client_ca_file and auth == "NoClientCert":
        problems.append(
            (
                ("client_ca_file",),
                "set, but client_auth_type is NoClientCert, so no client certificate is asked for",
            )
        )
    if tls.client_allowed_sans and auth != "RequireAndVerifyClientCert":
        problems.append(
            (("client_allowed_sans",), "needs client_auth_type RequireAndVerifyClientCert")
        )
    unknown = [suite for suite in tls.cipher_suites or () if suite not in GO_CIPHER_SUITES]
    if unknown:
        problems.append((("cipher_suites",), f"unknown or insecure: {', '.join(unknown)}"))
    return problems


def _header_problems(headers: Mapping[str, str]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    allowed = {name.lower(): values for name, values in ALLOWED_HEADERS.items()}
    for name, value in headers.items():
        if name.lower() not in allowed:
            problems.append(((name,), f"cannot be set; allowed: {', '.join(ALLOWED_HEADERS)}"))
            continue
        values = allowed[name.lower()]
        if values is not None and value.lower() not in values:
            problems.append(((name,), f"must be one of {', '.join(sorted(values))}"))
        elif "\n" in value or "\r" in value:
            problems.append(((name,), "contains a line break"))
    return problems


def _user_problem(name: str, hashed: str) -> str | None:
    if not name:
        return "a user name cannot be empty"
    if ":" in name:
        return "a user name cannot contain ':' (basic auth splits user and password there)"
    match = BCRYPT_HASH.fullmatch(hashed)
    if match is None:
        return "not a bcrypt hash (make one with: htpasswd -nBC 10 \"\" | tr -d ':\\n')"
    cost = int(match["cost"])
    if not BCRYPT_MIN_COST <= cost <= BCRYPT_MAX_COST:
        return f"bcrypt cost {cost} is outside {BCRYPT_MIN_COST}..{BCRYPT_MAX_COST}"
    return None


def ssl_error_reason(error: OSError, default: str) -> str:
    """Why a certificate, key or CA file did not load: OpenSSL's reason ("KEY_VALUES_MISMATCH")
    or the OS error, never the file contents."""
    if isinstance(error, ssl.SSLError):
        return error.reason or default
    return error.strerror or default


def _resolve(base_dir: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else base_dir / path


def _cert_paths(tls: TLSServerSettings, base_dir: Path) -> tuple[Path, Path]:
    assert tls.cert_file is not None
    assert tls.key_file is not None
    return _resolve(base_dir, tls.cert_file), _resolve(base_dir, tls.key_file)


def _ssl_context(
    tls: TLSServerSettings, base_dir: Path, locator: Locator, *, settings_ok: bool = True
) -> tuple[ssl.SSLContext | None, list[Problem]]:
    """The server's TLS context, or the problems of its files.

    Without `settings_ok` (a version or suite was refused) the files are still loaded, into
    a context with default settings, to report their problems too; no context is returned.
    """
    where: Loc = ("tls_server_config",)
    problems = []
    for key in ("cert_file", "key_file", "client_ca_file"):
        name = getattr(tls, key)
        if name is not None and not (path := _resolve(base_dir, name)).is_file():
            problems.append(locator.problem((*where, key), f"no such file: {path}"))
    if problems or tls.cert_file is None or tls.key_file is None:
        return None, problems

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if settings_ok:
        context.minimum_version = TLS_VERSIONS[tls.min_version]
        context.maximum_version = TLS_VERSIONS[tls.max_version]
        if tls.cipher_suites:
            context.set_ciphers(":".join(GO_CIPHER_SUITES[s] for s in tls.cipher_suites))
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(*_cert_paths(tls, base_dir))
    except OSError as error:
        reason = ssl_error_reason(error, "not a PEM certificate and matching private key")
        problems.append(
            locator.problem((*where, "cert_file"), f"cannot load certificate and key: {reason}")
        )
    context.verify_mode = VERIFY_MODES.get(tls.client_auth_type, ssl.CERT_NONE)
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=_resolve(base_dir, tls.client_ca_file))
        except OSError as error:
            reason = ssl_error_reason(error, "no CA certificate")
            problems.append(
                locator.problem(
                    (*where, "client_ca_file"), f"cannot load CA certificates: {reason}"
                )
            )
    return (None, problems) if problems or not settings_ok else (context, [])
