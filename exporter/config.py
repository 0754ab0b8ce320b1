"""Loading the config file: every problem found at once, each with its file, line and key.

    apibalance.yml:7: accounts[1].provider: unknown provider 'antcaptcha'; known: anticaptcha, ...

Secrets are read here (from `api_key_file`, `api_key_env` or `api_key`), checked, and kept in
`SecretStr`, so they print as `**********` wherever an account object ends up.
"""

from __future__ import annotations

import os
import stat
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from exporter import logs
from exporter.hints import closest, did_you_mean
from exporter.providers import PROVIDERS, Provider
from exporter.settings import USD, AccountSettings, GlobalSettings, SecretSource

MAX_KEY_FILE_BYTES = 64 * 1024
# A config file is a few KiB; anything near this is not one (a log, a disk image).
MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024
# Real configs nest about six levels; the bound keeps the YAML composer and pydantic well
# inside Python's recursion limit whatever the file holds.
MAX_YAML_DEPTH = 64
# Values after alias expansion: a few anchors that each repeat the previous one would
# otherwise make a 1 KiB file stand for billions of values.
MAX_YAML_VALUES = 100_000
KEY_SOURCES = frozenset({"api_key_file", "api_key_env", "api_key"})
Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    loc: Loc
    message: str
    line: int | None = None

    def render(self, source: str) -> str:
        place = f"{source}:{self.line}" if self.line else source
        where = format_loc(self.loc)
        return f"{place}: {where}: {self.message}" if where else f"{place}: {self.message}"


class ConfigError(Exception):
    """Every problem of a config file, each on its own line with its place."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line or 0, format_loc(p.loc)))
        super().__init__("\n".join(p.render(source) for p in self.problems))

    @property
    def lines(self) -> list[str]:
        return [p.render(self.source) for p in self.problems]


@dataclass(frozen=True, slots=True)
class Account:
    """A configured account, resolved: its provider object, key and effective settings."""

    name: str
    provider: Provider
    base_url: str
    timeout: float
    cache_ttl: float
    low_balance_usd: float | None
    settings: AccountSettings
    api_key: SecretStr = field(repr=False)
    # None when each answer says which currency the money is in.
    currency: str | None = USD
    # In the account's currency (for a USD account, low_balance_usd).
    low_balance: float | None = None
    secrets: Mapping[str, SecretStr] = field(default_factory=dict, repr=False)

    @property
    def provider_type(self) -> str:
        return self.provider.type_name

    def same_upstream(self, other: Account) -> bool:
        """Asks the same upstream the same way (so a reload may keep its cache and counters).

        Thresholds, timeouts and cache lifetimes do not change what the upstream answers; the
        key does (a rotated key starts afresh, without the old key's auth back-off).
        """
        ignored = {"low_balance_usd", "low_balance", "timeout", "cache_ttl"} | KEY_SOURCES
        return (
            self.provider_type == other.provider_type
            and self.base_url == other.base_url
            and self.api_key.get_secret_value() == other.api_key.get_secret_value()
            and _revealed(self.secrets) == _revealed(other.secrets)
            and self.settings.model_dump(exclude=ignored)
            == other.settings.model_dump(exclude=ignored)
        )


def _revealed(secrets: Mapping[str, SecretStr]) -> dict[str, str]:
    return {name: value.get_secret_value() for name, value in secrets.items()}


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    global_settings: GlobalSettings
    accounts: tuple[Account, ...]
    warnings: tuple[str, ...] = ()

    def account(self, name: str) -> Account | None:
        return next((a for a in self.accounts if a.name == name), None)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for account in self.accounts:
            counts[account.provider_type] = counts.get(account.provider_type, 0) + 1
        by_type = ", ".join(f"{t}: {n}" for t, n in sorted(counts.items())) or "none"
        return f"{self.source}: OK, {len(self.accounts)} account(s) ({by_type})"


TOP_LEVEL_KEYS = ("global", "accounts")


def format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


class UnreadableFile(Exception):
    """A file that is not read: why, in words fit for a config error."""


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """At most `limit` bytes of a regular file; `UnreadableFile` saying why not.

    Opened non-blocking so that a FIFO (which would wait for a writer for good, holding a
    reload and the process exit with it) is seen as one and refused without reading.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise UnreadableFile(error.strerror or str(error)) from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a file")
        raise UnreadableFile(f"is {kind}, not a regular file")
    with open(descriptor, "rb", closefd=True) as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as error:
            raise UnreadableFile(error.strerror or str(error)) from None
    if len(data) > limit:
        raise UnreadableFile(f"is larger than {limit // 1024} KiB")
    return data


def read_config_file(path: str | os.PathLike[str], kind: str = "config file") -> str:
    """The text of a config file; `ConfigError` naming the file if it cannot be read."""
    try:
        data = read_regular_file(path, MAX_CONFIG_FILE_BYTES)
    except UnreadableFile as error:
        raise ConfigError(str(path), [Problem((), f"cannot read {kind}: {error}")]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), [Problem((), f"{kind} is not UTF-8 text")]) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    source = str(path)
    text = read_config_file(path)
    config = parse_config(text, source=source, base_dir=Path(path).parent)
    mode = _mode(path)
    if mode & 0o077 and any(a.settings.api_key is not None for a in config.accounts):
        literal = (
            f"{source}: holds literal api_key values and is readable by group or others "
            f"(mode {stat.filemode(mode)}); prefer api_key_file or api_key_env, or chmod 600"
        )
        return Config(
            config.source, config.global_settings, config.accounts, (*config.warnings, literal)
        )
    return config


def _mode(path: str | os.PathLike[str]) -> int:
    try:
        return os.stat(path).st_mode
    except OSError:
        return 0


def read_yaml(text: str, source: str) -> tuple[Any, Locator]:
    """The data of a YAML document and a locator for its lines; `ConfigError` if not YAML.

    The node tree is composed once, checked for depth and alias expansion, and only then
    turned into data, so no document can make loading (or any walk over it) explode.
    """
    try:
        # The reader checks the whole text for characters YAML does not allow right here.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as error:
        raise ConfigError(source, [yaml_problem(error, text)]) from None
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as error:
        raise ConfigError(source, [yaml_problem(error, text)]) from None
    except RecursionError:
        line = loader.get_mark().line + 1
        problem = Problem((), f"invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep", line)
        raise ConfigError(source, [problem]) from None
    finally:
        loader.dispose()
    if root is None:
        return None, Locator(None)
    shape = _shape_problem(root)
    if shape is not None:
        raise ConfigError(source, [shape])
    constructor = yaml.SafeLoader("")
    try:
        data = constructor.construct_document(root)
    except yaml.YAMLError as error:
        raise ConfigError(source, [yaml_problem(error, text)]) from None
    finally:
        constructor.dispose()
    return data, Locator(root)


def yaml_problem(error: yaml.YAMLError, text: str) -> Problem:
    """A YAML error as one problem with its line, and its column in the message."""
    if isinstance(error, yaml.reader.ReaderError):
        # Raised before any token: it has a character position, not a mark.
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        character = f"U+{error.character:04X}" if isinstance(error.character, int) else "?"
        what = "a NUL byte" if error.character == 0 else f"the control character {character}"
        return Problem(
            (),
            f"invalid YAML: {what} at column {column}; a YAML file is text "
            "(was it overwritten with binary data?)",
            line,
        )
    mark = getattr(error, "problem_mark", None)
    what = getattr(error, "problem", None) or getattr(error, "context", None) or str(error)
    if mark is None:
        return Problem((), f"invalid YAML: {what}")
    hint = "; YAML indents with spaces, not tabs" if "'\\t'" in what else ""
    return Problem((), f"invalid YAML: {what} at column {mark.column + 1}{hint}", mark.line + 1)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _shape_problem(root: yaml.Node) -> Problem | None:
    """Why the tree is too deep or expands too far once aliases are followed, if it does.

    Each node is visited once: an alias is a second edge to a node already sized.
    """
    sizes: dict[int, tuple[int, int]] = {}  # node id -> (values, depth) once expanded
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    worst: tuple[str, yaml.Node] | None = None
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            kids = [sizes[id(kid)] for kid in _children(node)]
            values = 1 + sum(values for values, _ in kids)
            depth = 1 + max((depth for _, depth in kids), default=0)
            sizes[key] = (values, depth)
            # The first node found over a bound is the innermost one: its line is the place.
            if worst is None and depth > MAX_YAML_DEPTH:
                worst = ("depth", node)
            elif worst is None and values > MAX_YAML_VALUES:
                worst = ("values", node)
            continue
        if key in sizes:
            continue
        if key in on_path:
            return Problem(
                (), "invalid YAML: an alias refers to a node that contains it", _line(node)
            )
        on_path.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in reversed(_children(node)) if id(kid) not in sizes)
    if worst is None:
        return None
    what, node = worst
    if what == "depth":
        message = f"invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep"
    else:
        message = (
            f"invalid YAML: aliases expand to more than {MAX_YAML_VALUES} values "
            "(anchors repeating other anchors); write the values out instead"
        )
    return Problem((), message, _line(node))


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Validate config text; raise `ConfigError` listing every problem found."""
    data, locator = read_yaml(text, source)
    duplicates = list(locator.duplicate_keys())
    try:
        config = build_config(
            data,
            source=source,
            base_dir=base_dir,
            environ=environ,
            locator=locator,
        )
    except ConfigError as error:
        raise ConfigError(source, [*duplicates, *error.problems]) from None
    if duplicates:
        raise ConfigError(source, duplicates)
    return config


def build_config(
    data: object,
    *,
    source: str,
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    locator: Locator | None = None,
) -> Config:
    """Validate already-parsed config data (the demo builds its config this way)."""
    locator = locator or Locator(None)
    problems: list[Problem] = []
    if data is None:
        # What an editor leaves for a moment while saving; applied, it would stop every check.
        message = "the config is empty (or only comments); it must list at least one account"
        raise ConfigError(source, [Problem((), message, 1)])
    if not isinstance(data, dict):
        problems.append(Problem((), "the config must be a mapping with 'global' and 'accounts'", 1))
        raise ConfigError(source, problems)

    # Sections are validated independently, so a typo in `global` still lets every account
    # problem be reported in the same run.
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            hint = did_you_mean(str(key), TOP_LEVEL_KEYS)
            problems.append(locator.problem((str(key),), f"unknown key{hint}"))
    global_settings = GlobalSettings()
    try:
        global_settings = GlobalSettings.model_validate(data.get("global") or {})
    except ValidationError as error:
        problems.extend(validation_problems(error, ("global",), locator, model=GlobalSettings))
    raw_accounts = data.get("accounts")
    if raw_accounts is None or raw_accounts == []:
        where = ("accounts",) if "accounts" in data else ()
        problems.append(
            locator.problem(where, "no accounts: the config must list at least one account")
        )
        raw_accounts = []
    elif not isinstance(raw_accounts, list):
        problems.append(locator.problem(("accounts",), "must be a list of accounts"))
        raw_accounts = []

    env = os.environ if environ is None else environ
    accounts: list[Account] = []
    names: dict[str, int] = {}
    for index, raw in enumerate(raw_accounts):
        loc: Loc = ("accounts", index)
        account, found = _account(raw, loc, global_settings, base_dir, env, locator)
        problems.extend(found)
        name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(name, str):
            if name in names:
                problems.append(
                    locator.problem(
                        (*loc, "name"),
                        f"duplicate account name '{name}' (also accounts[{names[name]}]); "
                        "names must be unique in the file",
                    )
                )
            else:
                names[name] = index
        if account is not None:
            accounts.append(account)
    if problems:
        raise ConfigError(source, problems)
    return Config(source, global_settings, tuple(accounts))


def _account(
    raw: object,
    loc: Loc,
    global_settings: GlobalSettings,
    base_dir: Path | None,
    environ: Mapping[str, str],
    locator: Locator,
) -> tuple[Account | None, list[Problem]]:
    if not isinstance(raw, dict):
        return None, [locator.problem(loc, "an account must be a mapping")]
    provider_type = raw.get("provider")
    if provider_type is None:
        misspelt = next(
            (str(key) for key in raw if closest(str(key), ["provider"]) == "provider"), None
        )
        if misspelt is not None:
            message = "unknown key (did you mean 'provider'?); provider is required"
            return None, [locator.problem((*loc, misspelt), message)]
        return None, [locator.problem(loc, "provider is required")]
    provider_cls = PROVIDERS.get(provider_type) if isinstance(provider_type, str) else None
    if provider_cls is None:
        known = ", ".join(PROVIDERS)
        hint = did_you_mean(str(provider_type), PROVIDERS, _service_names())
        return None, [
            locator.problem(
                (*loc, "provider"), f"unknown provider '{provider_type}'{hint}; known: {known}"
            )
        ]
    try:
        settings = provider_cls.settings_model.model_validate(raw)
    except ValidationError as error:
        return None, validation_problems(
            error,
            loc,
            locator,
            model=provider_cls.settings_model,
            elsewhere=_keys_of_other_providers(provider_cls.type_name),
        )

    problems: list[Problem] = []
    base_url = provider_cls.upstream_url(settings)
    url_setting = provider_cls.url_setting
    if base_url is None:
        problems.append(
            locator.problem(
                loc, f"{format_loc(url_setting)} is required for provider {provider_type}"
            )
        )
    key, key_problem = _read_key(settings, base_dir, environ)
    secrets, secret_problems = _read_secrets(
        provider_cls.secret_sources(settings), loc, base_dir, environ, locator
    )
    problems.extend(secret_problems)
    if key_problem is not None:
        field_name = next(f for f in sorted(KEY_SOURCES) if getattr(settings, f) is not None)
        problems.append(locator.problem((*loc, field_name), key_problem))
    elif key is not None and base_url is not None:
        for secret in (key, *secrets.values()):
            if _key_in_url(secret, base_url):
                # A key pasted into the URL would travel in every request line and land in
                # proxy logs; placeholders are filled when the request is made.
                problems.append(
                    locator.problem(
                        (*loc, *url_setting),
                        "contains the account's key or a secret; use a placeholder",
                    )
                )
                break
    if problems or key is None or base_url is None:
        return None, problems
    for secret in (key, *secrets.values()):
        logs.register_secret(secret.get_secret_value())
    account = Account(
        name=settings.name,
        provider=provider_cls(settings, key, secrets),
        base_url=base_url,
        timeout=settings.timeout if settings.timeout is not None else global_settings.timeout,
        cache_ttl=(
            settings.cache_ttl
            if settings.cache_ttl is not None
            else max(global_settings.cache_ttl, provider_cls.default_cache_ttl_floor)
        ),
        low_balance_usd=settings.threshold if settings.known_currency() == USD else None,
        settings=settings,
        currency=settings.known_currency(),
        low_balance=settings.threshold,
        api_key=key,
        secrets=secrets,
    )
    return account, []


def _read_key(
    settings: AccountSettings, base_dir: Path | None, environ: Mapping[str, str]
) -> tuple[SecretStr | None, str | None]:
    """The account's key, or why it cannot be had. Messages never contain the key."""
    return read_secret(
        settings.api_key, settings.api_key_env, settings.api_key_file, base_dir, environ, "key"
    )


def read_secret(
    value: SecretStr | None,
    env: str | None,
    file: Path | None,
    base_dir: Path | None,
    environ: Mapping[str, str],
    what: str = "secret",
) -> tuple[SecretStr | None, str | None]:
    """A secret from exactly one of its sources, or why it cannot be had (never quoting it)."""
    if value is not None:
        text = value.get_secret_value()
    elif env is not None:
        if env not in environ:
            return None, f"environment variable {env} is not set"
        text = environ[env]
    else:
        assert file is not None
        path = file
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            raw = read_regular_file(path, MAX_KEY_FILE_BYTES)
        except UnreadableFile as error:
            return None, f"cannot read {path}: {error}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, f"{path} is not UTF-8 text"
    text = text.strip()
    if not text:
        return None, f"the {what} is empty"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        return None, f"the {what} contains control characters or line breaks"
    return SecretStr(text), None


def _read_secrets(
    sources: Mapping[str, SecretSource],
    loc: Loc,
    base_dir: Path | None,
    environ: Mapping[str, str],
    locator: Locator,
) -> tuple[dict[str, SecretStr], list[Problem]]:
    secrets: dict[str, SecretStr] = {}
    problems: list[Problem] = []
    for name, source in sources.items():
        secret, problem = read_secret(source.value, source.env, source.file, base_dir, environ)
        if problem is not None:
            field_name = next(f for f in ("env", "file", "value") if getattr(source, f) is not None)
            problems.append(locator.problem((*loc, "secrets", name, field_name), problem))
        elif secret is not None:
            secrets[name] = secret
    return secrets, problems


def _key_in_url(key: SecretStr, url: str) -> bool:
    secret = key.get_secret_value()
    return secret in url or secret in urllib.parse.unquote(url)


# The services' own names, as someone may write them for `provider`.
SERVICE_NAMES = {
    "Anti-Captcha": "anticaptcha",
    "AntiCaptcha.com": "anticaptcha",
    "DataLabs": "datalabs",
    "VastCap": "vastcap",
    "DeCaptcha": "decaptcha",
    "Ocean.io": "ocean",
    "2Captcha": "twocaptcha",
    "2Captcha.com": "twocaptcha",
    "CapSolver": "capsolver",
    "CapMonster Cloud": "capmonster",
    "CapMonster.cloud": "capmonster",
}


def _service_names() -> dict[str, str]:
    return {name: type_name for name, type_name in SERVICE_NAMES.items() if type_name in PROVIDERS}


def _keys_of_other_providers(type_name: str) -> dict[str, list[str]]:
    """Each account key that some other provider type has, with those types."""
    own = set(_known_keys(PROVIDERS[type_name].settings_model, ()))
    owners: dict[str, list[str]] = {}
    for other, provider_cls in PROVIDERS.items():
        for key in _known_keys(provider_cls.settings_model, ()):
            if key not in own:
                owners.setdefault(key, []).append(other)
    return owners


def validation_problems(
    error: ValidationError,
    prefix: Loc,
    locator: Locator,
    *,
    model: type[BaseModel],
    elsewhere: Mapping[str, Sequence[str]] | None = None,
) -> list[Problem]:
    """Pydantic's errors as located problems, in words about the file rather than the model.

    `elsewhere` maps keys the model lacks but a sibling model has to the siblings' names, so
    a key in the wrong kind of section says where it belongs.
    """
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        loc = _clean_loc(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            key = str(loc[-1])
            owners = (elsewhere or {}).get(key) if len(loc) == 1 else None
            if owners:
                message = f"unknown key: {key} is a key of provider {' and '.join(owners)} only"
            else:
                message = "unknown key" + did_you_mean(key, _known_keys(model, loc[:-1]))
        elif item["type"] == "missing":
            message = "required"
        problems.append(locator.problem((*prefix, *loc), message))
    return problems


def _clean_loc(loc: tuple[int | str, ...]) -> Loc:
    """Drop pydantic's markers of validator and union branches from a location."""
    return tuple(
        part
        for part in loc
        if isinstance(part, int) or not (part.startswith("function-") or part == "[key]")
    )


def _known_keys(model: type[BaseModel], path: Loc) -> list[str]:
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if info is None:
            return []
        current = next(
            (
                arg
                for arg in getattr(info.annotation, "__args__", (info.annotation,))
                if isinstance(arg, type) and issubclass(arg, BaseModel)
            ),
            None,
        )
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


class Locator:
    """Finds the line of a key path in the YAML node tree, for error messages."""

    def __init__(self, root: yaml.Node | None) -> None:
        self._root = root

    def line(self, loc: Loc) -> int | None:
        node = self._root
        if node is None:
            return None
        best = node.start_mark.line + 1
        for part in loc:
            child = self._child(node, part)
            if child is None:
                break
            node = child
            best = node.start_mark.line + 1
        return best

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(loc, message, self.line(loc))

    @staticmethod
    def _child(node: yaml.Node, part: str | int) -> yaml.Node | None:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if key.value == part:
                    # Point at the key for a mapping value: that is where the reader looks.
                    return key if not isinstance(value, yaml.CollectionNode) else value
            return None
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            return node.value[part] if part < len(node.value) else None
        return None

    def duplicate_keys(self) -> Iterator[Problem]:
        stack: list[tuple[yaml.Node, Loc]] = [(self._root, ())] if self._root else []
        # An alias is another edge to a node already walked: each node is checked once.
        walked: set[int] = set()
        while stack:
            node, loc = stack.pop()
            if id(node) in walked:
                continue
            walked.add(id(node))
            if isinstance(node, yaml.MappingNode):
                seen: set[str] = set()
                for key, value in node.value:
                    name = str(key.value)
                    if name in seen:
                        yield Problem(
                            (*loc, name),
                            "duplicate key (YAML would silently keep only the last)",
                            key.start_mark.line + 1,
                        )
                    seen.add(name)
                    stack.append((value, (*loc, name)))
            elif isinstance(node, yaml.SequenceNode):
                stack.extend((item, (*loc, i)) for i, item in enumerate(node.value))
