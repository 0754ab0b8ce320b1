"""Reading a YAML config file: every problem found at once, each with its file, line and key.

Nothing here knows a schema. It reads a regular file within a size bound, turns YAML into
data within depth and alias-expansion bounds, remembers where each key was written, and
words problems (pydantic's errors included) as lines naming the file, line and key:

    apibalance.yml:7: accounts[1].provider: unknown provider 'antcaptcha'; known: ...

`exporter.config` (the accounts) and `exporter.webconfig` (TLS and basic auth) both read
their files through it.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from exporter import logs
from exporter.hints import did_you_mean
from exporter.settings import FORM_TAGS

log = logging.getLogger(__name__)
T = TypeVar("T")

# A config file is a few KiB (1,000 accounts are about 150 KiB); anything near this is not one
# (a log, a disk image, a generated list). YAML is read at tens of microseconds a value, so
# the bound is also what keeps a reload's parse to seconds.
MAX_CONFIG_FILE_BYTES = 1024 * 1024
# Real configs nest about six levels; the bound keeps the YAML composer and pydantic well
# inside Python's recursion limit whatever the file holds.
MAX_YAML_DEPTH = 64
# Values after alias expansion: a few anchors that each repeat the previous one would
# otherwise make a 1 KiB file stand for billions of values.
MAX_YAML_VALUES = 100_000
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
    """Every problem of a config file, each on its own line with its place, and then any
    `notes` on what to do about them.

    `secrets` are the values the file holds in a key's place (and what they lead to): a line
    quoting one anywhere, as a provider's name, a header's or an unknown key's, shows it
    redacted. The keys of a config running already are redacted by the log's own redactor.
    """

    def __init__(
        self,
        source: str,
        problems: Sequence[Problem],
        notes: Sequence[str] = (),
        secrets: Iterable[str] = (),
    ) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line or 0, format_loc(p.loc)))
        self.notes = tuple(notes)
        self.secrets = frozenset(secrets)
        super().__init__("\n".join(self.lines))

    @property
    def lines(self) -> list[str]:
        shown = [*(p.render(self.source) for p in self.problems), *self.notes]
        return [logs.redact_also(line, self.secrets) for line in shown]


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


# `${VAR}` or `${VAR:-default}`, as Loki and Mimir expand with -config.expand-env; a bare `$`
# (in a key, a bcrypt hash) is left alone.
ENV_REFERENCE_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env_references(text: str, source: str, environ: Mapping[str, str]) -> str:
    """The config text with every `${VAR}` replaced by its value from the environment (or
    its `:-default`); `ConfigError` naming every variable that is not set, with its line."""
    problems: list[Problem] = []

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        line = text.count("\n", 0, match.start()) + 1
        problems.append(Problem((), f"${{{name}}}: environment variable {name} is not set", line))
        return ""

    expanded = ENV_REFERENCE_RE.sub(value, text)
    if problems:
        raise ConfigError(source, problems)
    return expanded


def read_yaml(text: str, source: str) -> tuple[Any, Locator]:
    """The data of a YAML document and a locator for its lines; `ConfigError` if not YAML.

    The node tree is composed once, checked for depth and alias expansion, and only then
    turned into data, so no document can make loading (or any walk over it) explode.
    """
    try:
        # The reader checks the whole text for characters YAML does not allow right here.
        loader = _CountingLoader(text)
    except yaml.YAMLError as error:
        raise ConfigError(source, [yaml_problem(error, text)]) from None
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as error:
        raise ConfigError(source, [yaml_problem(error, text)]) from None
    except _TooManyValues as error:
        raise ConfigError(source, [error.problem]) from None
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


class _TooManyValues(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


class _CountingLoader(yaml.SafeLoader):
    """Composes no more than MAX_YAML_VALUES nodes as written (aliases count once here, and
    as expanded in `_shape_problem`): a file of a million list items is refused after the
    first hundred thousand, not after all of them, each a Python object, are built."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._composed = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._composed += 1
        if self._composed > MAX_YAML_VALUES:
            message = (
                f"invalid YAML: more than {MAX_YAML_VALUES} values; a config has a few per "
                "account (was a data file given as the config?)"
            )
            raise _TooManyValues(Problem((), message, self.get_mark().line + 1))
        return super().compose_node(parent, index)


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
        if item["type"] == "extra_forbidden":
            # The last part is the unknown key as written, whatever it looks like.
            loc = (*_clean_loc(item["loc"][:-1]), item["loc"][-1])
        else:
            loc = _clean_loc(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            # The unknown key itself, whatever it looks like (`<script>` is no union's tag).
            key = str(item["loc"][-1])
            loc = (*loc[:-1], key) if loc and loc[-1] == key else (*loc, key)
            owners = (elsewhere or {}).get(key) if len(loc) == 1 else None
            if owners:
                message = f"unknown key: {key} is a key of provider {' and '.join(owners)} only"
            else:
                message = "unknown key" + did_you_mean(key, known_keys(model, loc[:-1]))
        elif item["type"] == "missing":
            message = "required"
        problems.append(locator.problem((*prefix, *loc), message))
    return problems


def _clean_loc(loc: tuple[int | str, ...]) -> Loc:
    """Drop pydantic's markers of validator and union branches from a location."""
    return tuple(
        part
        for part in loc
        if isinstance(part, int)
        or not (part.startswith("function-") or part == "[key]" or part in FORM_TAGS)
    )


def known_keys(model: type[BaseModel], path: Loc) -> list[str]:
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
        current = _model_in(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field's type holds, however deep (a list of it, an optional one, one form
    of a union told apart by shape)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


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


def attempt(load: Callable[[], T], problems: list[str]) -> T | None:
    """What `load` returns, or None with its problems added as lines.

    Anything else it raises is a problem too, worded by its type only (its text may quote the
    file) and logged with its traceback, which the log redacts.
    """
    try:
        return load()
    except ConfigError as error:
        problems.extend(error.lines)
    except Exception as error:
        log.exception("unexpected error loading a config file")
        problems.append(f"cannot load the config: unexpected {type(error).__name__} (see the log)")
    return None
