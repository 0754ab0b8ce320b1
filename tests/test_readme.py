"""The README and docs/ as a new user meets them after `make run` and `make test`.

Every shell command they show runs as written, the failure reasons they and the alert rules
name are the exporter's own, their sample exposition says what /metrics says, and every link
between them leads somewhere.
"""

from __future__ import annotations

import ast
import asyncio
import glob
import importlib.util
import itertools
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.cli import parse_args
from exporter.demo import SimAccount, Simulator
from exporter.metrics import ACCOUNT_FAMILIES, ExporterCollector, ReloadStatus, render
from exporter.model import Reason
from tests.helpers import (
    IN_CI,
    README,
    documentation,
    free_port,
    readme_section,
    readme_text,
    readme_yaml,
)

ROOT = README.parent
VENV_BIN = ".venv/bin/"
SHELL_BLOCKS = {"sh", "bash", "shell"}
# Programs a README command may run that this test cannot check, and why.
EXTERNAL = {
    "docker": "needs a Docker daemon; tests/test_deploy.py checks the build context and compose file",
    "kubectl": "needs a Kubernetes cluster",
    "systemctl": "needs systemd and root on the host it is installed on",
    "journalctl": "needs systemd and root on the host it is installed on",
    "curl": "asks an exporter that is running",
    "pipx": "installs from a package index",
    "install": "copies files into system directories, as root",
}
# Debian tools `make test` installs (Makefile TEST_PACKAGES).
TEST_TOOLS = {"promtool", "amtool"}
SHELL_BUILTINS = {"cd", "echo", "export", "kill", "set", "source", "test", "true"}
# Commands in prose (`inline code`) are checked when they start with one of these.
INLINE_PROGRAMS = {"apibalance-exporter", "make", "python", "python3", *TEST_TOOLS}
# Installs that put `apibalance-exporter` on PATH for the rest of their README section.
PATH_INSTALLS = re.compile(r"^(?:pipx install|pip3? install)\b")


@dataclass(frozen=True)
class Command:
    line: int
    text: str
    section: str
    file: str = "README.md"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: `{self.text}`"


def readme_commands() -> Iterator[Command]:
    """Shell commands of the documentation: fenced sh/bash/console blocks and commands in
    prose."""
    for path in documentation():
        yield from file_commands(path)


def file_commands(path: Path) -> Iterator[Command]:
    name = str(path.relative_to(ROOT))
    section = ""
    fence: str | None = None
    pending = ""
    pending_line = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if fence is None:
            if line.startswith("```"):
                fence = line[3:].strip()
            elif line.startswith("#"):
                section = line.lstrip("#").strip()
            else:
                for span in re.findall(r"`([^`]+)`", line):
                    words = span.split()
                    if len(words) > 1 and (
                        words[0] in INLINE_PROGRAMS or words[0].startswith(VENV_BIN)
                    ):
                        yield Command(number, span, section, name)
            continue
        if line.startswith("```"):
            fence = None
            continue
        if fence == "console":
            if not line.startswith("$ ") and not pending:
                continue  # output
            line = line.removeprefix("$ ")
        elif fence not in SHELL_BLOCKS:
            continue
        if not pending:
            pending_line = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text and not text.startswith("#"):
            yield Command(pending_line, text, section, name)


def simple_commands(text: str) -> Iterator[list[str]]:
    """The words of each simple command in a command line (split at ;, &&, || and |)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    for token in lexer:
        if token in {";", "&&", "||", "|", "&"}:
            if words:
                yield words
            words = []
        else:
            words.append(token)
    if words:
        yield words


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, flags=re.MULTILINE))


def non_stdlib_imports(code: str) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return [name for name in names if name.split(".")[0] not in sys.stdlib_module_names]


def python_problem(args: list[str], in_venv: bool) -> str | None:
    """What keeps `python ARGS` from running: a module or script that is not there."""
    if "-m" in args[:-1]:
        module = args[args.index("-m") + 1]
        if module.split(".")[0] in ignored_folders():
            # `python -m` looks in the current directory first: a build/ left by
            # `pipx install .` is imported instead of the build tool.
            return f"a {module.split('.')[0]}/ folder in the checkout would shadow the module"
        if not in_venv and module.split(".")[0] not in sys.stdlib_module_names:
            return f"the system python has no {module}: write {VENV_BIN}python"
        if importlib.util.find_spec(module) is None:
            return f"no module {module} in {VENV_BIN}python"
        return None
    if "-c" in args[:-1]:
        missing = non_stdlib_imports(args[args.index("-c") + 1])
        if missing and not in_venv:
            return f"the system python has no {', '.join(missing)}: write {VENV_BIN}python"
        return None
    scripts = [arg for arg in args if not arg.startswith("-")]
    if scripts and not (ROOT / scripts[0]).is_file():
        return f"no script {scripts[0]}"
    return None


def ignored_folders() -> set[str]:
    """Top-level folders that tools leave in the checkout (.gitignore's `/name/` lines)."""
    lines = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    return {m[1] for line in lines if (m := re.fullmatch(r"/([\w.-]+)/", line.strip()))}


def exporter_problem(args: list[str]) -> str | None:
    """What apibalance-exporter would refuse in ARGS (an unknown flag, a bad value)."""
    try:
        parse_args(args)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return "apibalance-exporter refuses these arguments"
    return None


def path_problems(args: list[str]) -> list[str]:
    """Paths into this repository that do not exist (a moved rules file, a renamed script)."""
    problems = []
    for arg in args:
        if arg.startswith("-") or "/" not in arg or ":" in arg or "$" in arg:
            continue
        top = arg.split("/")[0]
        if top and (ROOT / top).is_dir() and top != ".venv" and not glob.glob(str(ROOT / arg)):
            problems.append(f"no such path {arg}")
    return problems


def command_problems(command: Command, on_path: bool) -> list[str]:
    problems = []
    for words in simple_commands(command.text):
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]  # VAR=value prefixes
        if words and words[0] == "sudo":
            words = words[1:]
            while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
                words = words[1:]  # sudo VAR=value program
        if not words:
            continue
        program, args = words[0], words[1:]
        # Even a command this test cannot run names repository files that must exist.
        problems.extend(path_problems(args))
        if program in EXTERNAL or program in SHELL_BUILTINS:
            continue
        problem: str | None = None
        if program == "make":
            targets = makefile_targets()
            unknown = [a for a in args if not a.startswith("-") and "=" not in a]
            unknown = [a for a in unknown if a not in targets]
            problem = f"no Makefile target {', '.join(unknown)}" if unknown else None
        elif program.startswith(VENV_BIN):
            name = program.removeprefix(VENV_BIN)
            if not (ROOT / program).exists():
                problem = f"{program} does not exist after make run/make test"
            elif name == "apibalance-exporter":
                problem = exporter_problem(args)
            elif name.startswith("python"):
                problem = python_problem(args, in_venv=True)
        elif program == "apibalance-exporter":
            problem = (
                exporter_problem(args)
                if on_path
                else (f"not on PATH after make run: write {VENV_BIN}apibalance-exporter")
            )
        elif program in {"python", "python3"}:
            problem = python_problem(args, in_venv=False)
        elif program in TEST_TOOLS:
            if not IN_CI and subprocess.run(["which", program], capture_output=True).returncode:
                continue  # make test installs it; here it could not be (not root)
        else:
            problem = f"unknown program {program}: add it to EXTERNAL with why it cannot be checked"
        if problem:
            problems.append(problem)
    return problems


def test_readme_commands_run_as_written_after_setup() -> None:
    if not (ROOT / ".venv").is_dir():
        pytest.skip("no .venv: run the tests through make test")
    commands = list(readme_commands())
    texts = {command.text for command in commands}
    # The extraction itself works: fenced blocks, console prompts and prose.
    assert "make run" in texts
    assert any(t.startswith(".venv/bin/apibalance-exporter --config.check") for t in texts)
    problems = []
    installed_in: set[str] = set()
    for command in commands:
        if PATH_INSTALLS.match(command.text):
            installed_in.add(command.section)
        for problem in command_problems(command, on_path=command.section in installed_in):
            problems.append(f"{command}: {problem}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("apibalance-exporter --config.check", "not on PATH"),
        ("python3 -m exporter", "system python has no exporter"),
        ("make chek", "no Makefile target chek"),
        (".venv/bin/apibalance-exporter --config.chek x", "refuses these arguments"),
        ("promtool check rules alerts/rulez/*.yml", "no such path alerts/rulez/*.yml"),
        ("wget http://localhost:9877/", "unknown program wget"),
        (".venv/bin/python -m build", "build/ folder in the checkout would shadow"),
        ("sudo install -m 644 deploy/nothing.service /etc/", "no such path deploy/nothing.service"),
    ],
)
def test_the_command_checker_catches(text: str, problem: str) -> None:
    problems = command_problems(Command(1, text, "section"), on_path=False)
    assert any(problem in found for found in problems), problems


# -- failure reasons ------------------------------------------------------------------------

REASONS = {reason.value for reason in Reason}
LABEL_MATCHER = re.compile(r'reason\s*(?:=~|!~|!=|=)\s*"([^"]*)"')
# "reason `auth`", "reasons: `a`, `b` and `c`", "by reason (`a`, `b`, ...)"
PROSE_REASONS = re.compile(r"\breasons?:?\s*\(?((?:`[a-z_]+`(?:,\s*|\s+and\s+|\s+or\s+)?)+)")


def matcher_values(text: str) -> set[str]:
    values: set[str] = set()
    for pattern in LABEL_MATCHER.findall(text):
        values.update(re.split(r"[|()]", pattern))
    return values - {"", ".*", ".+"}


def readme_table_reasons(text: str) -> set[str]:
    """The values in every README table column headed `reason`."""
    found: set[str] = set()
    column: int | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            column = None
            continue
        cells = [cell.strip().strip("`") for cell in line.strip("|").split("|")]
        if column is None:
            column = cells.index("reason") if "reason" in cells else -1
        elif column >= 0 and not set(cells[column]) <= {"-"}:
            found.update(re.findall(r"`(\w+)`", line.strip("|").split("|")[column]))
    return found


def readme_reasons(text: str) -> set[str]:
    prose = {
        name for match in PROSE_REASONS.findall(text) for name in re.findall(r"`(\w+)`", match)
    }
    return prose | readme_table_reasons(text) | matcher_values(text)


def test_every_reason_named_is_a_real_one() -> None:
    readme = readme_text()
    named = readme_reasons(readme)
    assert {"auth", "timeout", "rate_limited"} <= named  # the readers find them
    assert named <= REASONS, f"README names reasons the exporter does not have: {named - REASONS}"
    for rules in sorted((ROOT / "alerts").glob("**/*.yml")):
        unknown = matcher_values(rules.read_text(encoding="utf-8")) - REASONS
        assert not unknown, f"{rules.relative_to(ROOT)}: unknown reasons {unknown}"


def test_the_reason_readers_catch_a_wrong_name() -> None:
    assert readme_reasons("log: `timeout` and reason `unreachable`") == {"unreachable"}
    assert readme_reasons("| answer | `reason` |\n|---|---|\n| gone | `bad_response` |") == {
        "bad_response"
    }
    assert matcher_values('x{reason=~"auth|unreachable"}') == {"auth", "unreachable"}


def test_account_down_runbook_covers_every_reason() -> None:
    runbook = readme_section("### ApiBalanceAccountDown")
    assert readme_table_reasons(runbook) == REASONS


# -- sample exposition ----------------------------------------------------------------------


def real_help_lines() -> dict[str, str]:
    """The HELP line of every family /metrics writes, by metric name."""
    headers = [family.header(False) for family in ACCOUNT_FAMILIES]
    exporter, _ = render([ExporterCollector(lambda: ReloadStatus(True, 0.0))], None)
    lines = "".join(headers).splitlines() + exporter.decode().splitlines()
    return {line.split()[2]: line for line in lines if line.startswith("# HELP ")}


def test_readme_help_lines_are_the_real_ones() -> None:
    real = real_help_lines()
    shown = [line for line in readme_text().splitlines() if line.startswith("# HELP apibalance_")]
    assert shown
    for line in shown:
        assert line == real.get(line.split()[2]), line


# -- make run's own output ------------------------------------------------------------------


@pytest.mark.integration  # make reinstalls the package into .venv
def test_make_run_installs_quietly_and_runs_the_code_of_the_checkout() -> None:
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv: run the tests through make test")
    # -W: as if pyproject.toml had just changed, so the install step runs again.
    result = subprocess.run(
        ["make", "-W", "pyproject.toml", ".venv/.run-installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Editable installation" not in output
    assert "!!" not in output
    assert "pip install" not in output  # the recipe is not echoed
    # Editable: the installed program runs this checkout's code, edits included.
    where = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", "import exporter; print(exporter.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(where.stdout.strip()) == ROOT / "exporter" / "__init__.py"


# -- links between the files ----------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str) -> list[str]:
    found, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#+ (.*)", line)):
            found.append(match[1])
    return found


def broken_links(path: Path) -> list[str]:
    """Links of a Markdown file to a file of this repository or a heading that is not there."""
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            problems.append(f"{target}: no such file")
        elif anchor and anchor not in map(github_anchor, headings(linked.read_text("utf-8"))):
            problems.append(f"{target}: no such heading")
    return problems


def test_every_link_leads_to_a_file_and_heading_that_exist() -> None:
    problems = [
        f"{path.relative_to(ROOT)}: {problem}"
        for path in documentation()
        for problem in broken_links(path)
    ]
    assert problems == []


def test_every_heading_is_found_once() -> None:
    # readme_section looks a heading up in all the files at once.
    found = headings(readme_text())
    assert sorted({h for h in found if found.count(h) > 1}) == []


def test_the_readme_links_every_docs_file() -> None:
    readme = README.read_text(encoding="utf-8")
    assert [p for p in documentation()[1:] if f"](docs/{p.name})" not in readme] == []


def test_the_link_checker_catches(tmp_path: Path) -> None:
    assert github_anchor("One account per target: `/probe`") == "one-account-per-target-probe"
    assert github_anchor("Ocean.io request limits") == "oceanio-request-limits"
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n## A: `b`\n\n[x](#a-b) [y](#a-c) [z](gone.md) [w](https://x.org)\n")
    assert broken_links(page) == ["#a-c: no such heading", "gone.md: no such file"]


@pytest.mark.integration  # make runs the exporter as its own process
def test_make_run_passes_args_and_shows_the_url() -> None:
    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv: run the tests through make test")
    if (ROOT / "apibalance.yml").exists():
        pytest.skip("an apibalance.yml in the checkout: make run would serve it")
    port = free_port()
    process = subprocess.Popen(
        # Under `make test` this make is a sub-make, which would print "Entering directory".
        [
            "make",
            "--no-print-directory",
            "run",
            f"ARGS=--web.listen-address 127.0.0.1:{port} --log.level info",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make and the exporter it runs, stopped together below
    )
    seen = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 120
        for line in process.stdout:
            seen.append(line)
            if f"url=http://127.0.0.1:{port}/" in line or time.monotonic() > deadline:
                break
        assert any(f"url=http://127.0.0.1:{port}/" in line for line in seen), "".join(seen)
        assert seen[0].startswith('apibalance-exporter: open the url= of the "listening" line')
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


# -- commands run as written ------------------------------------------------------------

# What the documentation shows that this test runs for real: the `--config.check` and
# `--collect.once` lines, in a directory holding a config (its account asks a simulated
# provider), a web config with its certificate and the checkout's .venv; and the bcrypt
# one-liner. The rest is checked
# above (the program exists, the flags parse, the paths are there), and runs elsewhere:
# `make run` in test_make_run_passes_args_and_shows_the_url, `make bench ARGS=--quick` in
# tests/test_bench_smoke.py, the docker and kubectl lines in tests/test_image.py and
# tests/test_kubernetes.py, `pipx install .` in tests/test_packaging.py, promtool and amtool in
# tests/test_alerts.py and tests/test_deploy.py; `make test` is this very suite; servers
# (the exporter without --config.check) and `curl` need a running exporter; `sudo` ones
# install into the system.
RUN_HERE = re.compile(
    r"^(?:\w+=\S+ )*\.venv/bin/apibalance-exporter .*(?:--config\.check|--collect\.once)\b"
)
BCRYPT_ONE_LINER = ".venv/bin/python -c 'import bcrypt"
SANDBOX_KEY = "sandbox-key-0123456789"


def sandbox(tmp_path: Path, base_url: str) -> Path:
    """A directory as a user's: apibalance.yml (an account asking `base_url`), web.yml (the
    documented one, with a certificate) and the checkout's .venv."""
    import trustme
    import yaml

    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    account = {"name": "main", "provider": "twocaptcha", "api_key": SANDBOX_KEY}
    config = {"accounts": [{**account, "base_url": base_url}]}
    (tmp_path / "apibalance.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "apibalance.yml").chmod(0o600)
    [web] = [b for b in readme_yaml("# Security") if "tls_server_config" in b]
    (tmp_path / "web.yml").write_text(web)
    cert = trustme.CA().issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    return tmp_path


@pytest.mark.integration  # the exporter, started once per command
async def test_the_config_checks_and_collections_shown_run_as_written(
    tmp_path: Path, simulator: Simulator
) -> None:
    if not (ROOT / ".venv" / "bin" / "apibalance-exporter").exists():
        pytest.skip("no .venv: run the tests through make test")
    simulator.add("twocaptcha", SimAccount(SANDBOX_KEY, balance=12.5))
    here = sandbox(tmp_path, simulator.base_url("twocaptcha"))
    commands = [c for c in readme_commands() if RUN_HERE.match(c.text)]
    # The README's check, the web config's, the expand-env one, the debug collection ...
    assert len(commands) >= 5
    assert any("--collect.debug" in c.text for c in commands)
    for command in commands:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command.text.split("   #")[0],
            cwd=here,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0, f"{command}:\n{out.decode()}{err.decode()}"
        assert SANDBOX_KEY not in out.decode() + err.decode()


def test_the_bcrypt_one_liner_makes_a_hash_the_web_config_takes() -> None:
    import bcrypt

    if not (ROOT / ".venv" / "bin" / "python").exists():
        pytest.skip("no .venv: run the tests through make test")
    [command] = [c for c in readme_commands() if c.text.startswith(BCRYPT_ONE_LINER)]
    result = subprocess.run(
        ["bash", "-c", command.text],
        cwd=ROOT,
        input="s3cret-password\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip().splitlines()[-1]
    assert hashed.startswith("$2b$10$")
    assert bcrypt.checkpw(b"s3cret-password", hashed.encode())


def test_the_grouping_the_docs_name_is_the_example_configs() -> None:
    import yaml

    config = yaml.safe_load((ROOT / "alerts" / "alertmanager.yml").read_text(encoding="utf-8"))
    labels = [f"`{label}`" for label in config["route"]["group_by"]]
    said = f"groups by {', '.join(labels[:-1])} and {labels[-1]}"
    text = " ".join((ROOT / "docs" / "alerts.md").read_text(encoding="utf-8").split())
    assert said in text


# -- the problems a shown config gets are the ones shown ------------------------------------


def shown_checks(path: Path) -> Iterator[tuple[int, str, list[str], list[str]]]:
    """Each `--config.check` console block with output that follows a YAML config in the
    same section: its line, the config, the command's arguments and the lines it shows."""
    config: str | None = None
    blocks = re.finditer(r"^(#+ [^\n]*|```(\w*)\n(.*?)^```)", path.read_text(), re.M | re.S)
    for block in blocks:
        if block.group(1).startswith("#"):
            config = None
        elif block.group(2) == "yaml":
            config = block.group(3)
        elif block.group(2) == "console" and config is not None:
            command, *shown = block.group(3).splitlines()
            if "--config.check" in command and shown:
                line = path.read_text()[: block.start()].count("\n") + 1
                yield line, config, shlex.split(command.removeprefix("$ "))[1:], shown


def test_the_problems_shown_for_a_config_are_the_ones_it_gets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter import cli

    checked = 0
    for path in documentation():
        for line, config, args, shown in shown_checks(path):
            where = tmp_path / str(checked)
            where.mkdir()
            (where / "apibalance.yml").write_text(config)
            (where / "apibalance.yml").chmod(0o600)
            monkeypatch.chdir(where)
            for name in re.findall(r"api_key_env: (\w+)", config):
                monkeypatch.delenv(name, raising=False)
            assert cli.main(args) == 1
            got = capsys.readouterr().err.splitlines()
            # "..." in a shown line stands for the part left out (the list of every provider).
            patterns = [re.escape(text).replace(re.escape(" ... "), " .* ") for text in shown]
            assert len(got) == len(shown), (f"{path.name}:{line}", got)
            for pattern, text in zip(patterns, got, strict=True):
                assert re.fullmatch(pattern, text), (f"{path.name}:{line}", text)
            checked += 1
    assert checked >= 2


def paragraphs(path: Path) -> Iterator[tuple[int, str, str]]:
    """Each paragraph of prose (outside code blocks) and the start of what follows it."""
    blocks: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    fenced = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip().startswith("```"):
            if not fenced and current:
                blocks.append((start, "\n".join(current)))
                current = []
            if not fenced:
                blocks.append((number, line.strip()))
            fenced = not fenced
        elif fenced:
            continue
        elif not line.strip():
            if current:
                blocks.append((start, "\n".join(current)))
                current = []
        else:
            if not current:
                start = number
            current.append(line)
    if current:
        blocks.append((start, "\n".join(current)))
    for (at, text), (_, following) in itertools.pairwise(blocks):
        yield at, text, following


def test_what_a_paragraph_announces_follows_it() -> None:
    # "Panels, top to bottom:" then a paragraph on something else reads as a list lost.
    lost = [
        f"{path.name}:{line}: {text.splitlines()[-1]!r} is followed by {following[:40]!r}"
        for path in documentation()
        for line, text, following in paragraphs(path)
        if text.rstrip().endswith(":")
        and not text.lstrip().startswith(("|", "#"))
        and not following.startswith("    ")  # an indented code block
        and not following.lstrip().startswith(("- ", "* ", "1. ", "|", "```", ">"))
    ]
    assert lost == []
