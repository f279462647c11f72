"""Every code block of README.md and docs/ (the generated reference pages included) is checked:

- ``toml``: parsed and validated with streamprep's own config loader;
- ``json``: parsed (a document, or one object per line);
- ``python``: run in a subprocess from the repository root; a ``text`` block right after it is its output;
- ``console``: each ``$ COMMAND`` is run from the repository root and what follows it, up to the next ``$``,
  is its output (stdout and stderr);
- ``sh``/``bash``: run as a script from the repository root.

Outputs are compared line by line after normalising what changes from run to run: this checkout's path, log
timestamps, run ids and the volatile fields of results and events (times, batch sizes); a line ``...`` stands
for any number of lines, and log lines are ignored unless the expected output shows some. A block preceded
by ``<!-- not-run: REASON -->`` is only illustrative (a system change, a server elsewhere); keep them few.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streamprep.config.schema import parse
from streamprep.values.events import EVENT_VOLATILE_FIELDS
from streamprep.values.published import VOLATILE_FIELDS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 200
MAX_NOT_RUN = 12  # illustrative blocks, all files together
TIMEOUT_S = 60  # one command or script
SLOW_TIMEOUT_S = 540  # a slow block: making .venv-triton on first use, starting a Triton server


def _gen_docs() -> Any:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _gen_docs()
GENERATED = GEN.pages()


def _documents() -> dict[str, str]:
    docs = {"README.md": README.read_text(encoding="utf-8")}
    for path in sorted((ROOT / "docs").rglob("*.md")):
        docs[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    return docs


DOCUMENTS = _documents()
FENCE = re.compile(r"^(\s*)```(.*)$")
NOT_RUN = re.compile(r"^<!-- not-run: (.+) -->$")
SLOW = re.compile(r"^<!-- slow: (.+) -->$")  # run only with the slow tests (pytest -m slow)


@dataclass
class Block:
    where: str  # file:line of the opening fence
    lang: str
    text: str
    not_run: str | None
    slow: bool = False
    output: Block | None = None


def _blocks(text: str, name: str) -> list[Block]:
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    previous_end = -2
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).strip()
        before = [x.strip() for x in lines[max(0, previous_end + 1) : i] if x.strip()]
        marker = NOT_RUN.match(before[-1]) if before else None
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i].removeprefix(indent))
            i += 1
        block = Block(f"{name}:{start + 1}", lang, "\n".join(body) + "\n", marker.group(1) if marker else None)
        block.slow = bool(before and SLOW.match(before[-1]))
        if blocks and lang == "text" and blocks[-1].lang == "python" and blocks[-1].output is None and not before:
            blocks[-1].output = block  # the output of the python block just above
        else:
            blocks.append(block)
        previous_end = i
        i += 1
    return blocks


BLOCKS = [b for name, text in DOCUMENTS.items() for b in _blocks(text, name)]


def _of(*langs: str) -> list[Any]:
    """The blocks to run; a block shown twice (the README repeats a page's example) runs once."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for b in BLOCKS:
        key = (b.lang, b.text, b.output.text if b.output else "")
        if b.lang in langs and b.not_run is None and key not in seen:
            seen.add(key)
            marks = [pytest.mark.slow, pytest.mark.timeout(SLOW_TIMEOUT_S + 60)] if b.slow else []
            out.append(pytest.param(b, id=b.where, marks=marks))
    return out


# ---- the shape of the documents ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DOCUMENTS))
def test_code_fences_open_and_close(name: str) -> None:
    """A fence line is ```LANG (opening) or a bare ``` (closing); text after a closing fence breaks it."""
    inside = False
    for n, line in enumerate(DOCUMENTS[name].splitlines(), 1):
        m = FENCE.match(line)
        if not m:
            continue
        info = m.group(2).strip()
        if inside:
            assert info == "", f"{name}:{n}: a closing fence with text after it ({line.strip()!r})"
        else:
            assert re.fullmatch(r"[a-z]+", info), f"{name}:{n}: an opening fence needs a language ({line!r})"
        inside = not inside
    assert not inside, f"{name}: a code block is never closed"


def test_every_block_has_a_known_language() -> None:
    known = {"toml", "json", "python", "console", "sh", "text"}
    unknown = [f"{b.where} ({b.lang})" for b in BLOCKS if b.lang not in known]
    assert not unknown, f"blocks this test does not know how to check: {unknown}"


def test_illustrative_blocks_are_few() -> None:
    not_run = [f"{b.where}: {b.not_run}" for b in BLOCKS if b.not_run is not None]
    assert len(not_run) <= MAX_NOT_RUN, "\n".join(not_run)


def test_readme_is_short_and_links_the_docs() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_README_LINES
    for target in re.findall(r"\]\(((?:docs|bench|streamprep|recordings)/[^)#]+)", text):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_readme_commands_exist() -> None:
    """The two commands the README names are the repository's scripts, executable."""
    text = README.read_text(encoding="utf-8")
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert script in text
        assert os.access(ROOT / script, os.X_OK), script


def test_readme_models_table_lists_the_bundled_models() -> None:
    text = README.read_text(encoding="utf-8")
    for onnx in sorted((ROOT / "streamprep" / "models").glob("*.onnx")):
        assert f"`{onnx.stem}`" in text, f"README's model table misses {onnx.stem}"


# ---- the generated reference pages ------------------------------------------------------------------------


@pytest.mark.parametrize("uri", list(GENERATED))
def test_committed_reference_page_is_what_the_code_generates(uri: str) -> None:
    committed = ROOT / "docs" / uri
    assert committed.is_file() and committed.read_text(encoding="utf-8") == GENERATED[uri], (
        f"docs/{uri} is stale: run `python scripts/gen_docs.py docs` and commit it"
    )


def _config_keys(model: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    out = []
    for name, info in model.model_fields.items():
        if info.exclude:  # no key ([[model.then]] keeps [model]'s then field, but takes no then key)
            continue
        sub = GEN._model_of(info.annotation)
        path = f"{prefix}{name}"
        if sub is not None:
            out += _config_keys(sub, f"{path}.")
        else:
            out.append((path, model, name))
    return out


def test_configuration_reference_has_every_key_with_a_description() -> None:
    page = GENERATED["reference/configuration.md"]
    missing, undescribed = [], []
    for path, model, name in _config_keys(GEN._load(GEN.CONFIG_MODEL)):
        if f"| `{name}` |" not in page:
            missing.append(path)
        if not GEN._describe(model, name, model.model_fields[name]):
            undescribed.append(path)
    assert not missing, f"keys missing from the reference: {missing}"
    assert not undescribed, f"config keys without a description (a comment beside the field): {undescribed}"


def test_configuration_example_is_every_key_and_valid() -> None:
    example = GEN.config_example()
    config = parse(tomllib.loads(example))
    assert config.events is not None and config.output.mqtt is not None and config.models
    for path, _, name in _config_keys(GEN._load(GEN.CONFIG_MODEL)):
        if not path.startswith(("models.", "model.kserve.")):  # [models.NAME] repeats [model]
            assert re.search(rf"^(# )?{name} = ", example, re.M), f"{path} is not in the example file"


def test_cli_reference_has_every_command_and_option() -> None:
    page = GENERATED["reference/cli.md"]
    parser = GEN._load(GEN.CLI_PARSER)()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        assert f"## `streamprep {name}`" in page
        for action in sub._actions:
            if action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction):
                for option in action.option_strings:
                    assert f"`{option}" in page, f"streamprep {name} {option} is not in the CLI reference"


# ---- the blocks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", _of("toml"))
def test_toml_block_is_a_valid_config(block: Block) -> None:
    parse(tomllib.loads(block.text), where=f"{block.where}: ")
    if m := re.match(r"# (docs/examples/\S+\.toml)", block.text):  # a copy of a file the commands use
        assert (ROOT / m.group(1)).read_text(encoding="utf-8") == block.text, f"{block.where}: not {m.group(1)}"


@pytest.mark.parametrize("block", _of("json"))
def test_json_block_parses(block: Block) -> None:
    try:
        json.loads(block.text)
    except json.JSONDecodeError:
        for line in block.text.splitlines():
            assert isinstance(json.loads(line), dict)


RUN_ID = re.compile(r"\b[0-9a-f]{12}(?=[/-])")
LOG = re.compile(r"^(\d\d:\d\d:\d\d )?(DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+")
VOLATILE = {*VOLATILE_FIELDS, *EVENT_VOLATILE_FIELDS} - {"id", "event_id"}  # ids: their run part is masked


def _normalise(line: str, keep_logs: bool) -> str | None:
    line = RUN_ID.sub("RUN", line.replace(f"{ROOT}/", "")).rstrip()
    m = LOG.match(line)
    if m:
        if not keep_logs:
            return None
        line = line[len(m.group(1) or "") :]
    if line.startswith("{"):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            return line
        for key in VOLATILE:
            row.pop(key, None)
        return json.dumps(row, sort_keys=True)
    return line


def _matches(expected: list[str], actual: list[str]) -> bool:
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(_matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and expected[0] == actual[0] and _matches(expected[1:], actual[1:])


def _compare(expected_text: str, actual_text: str, where: str) -> None:
    keep_logs = any(LOG.match(x) for x in expected_text.splitlines())
    expected = [x for x in (_normalise(x, True) for x in expected_text.strip("\n").splitlines()) if x is not None]
    actual = [x for x in (_normalise(x, keep_logs) for x in actual_text.strip("\n").splitlines()) if x is not None]
    while actual and not actual[-1]:
        actual.pop()
    assert _matches(expected, actual), f"{where}: the output shown is not what it prints:\n" + "\n".join(actual)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `streamprep` of this venv
    env["PYTHONPATH"] = str(ROOT)
    env.update(COLUMNS="100", NO_COLOR="1", TERM="dumb", PYTHONUNBUFFERED="1")  # stdout and stderr in order
    return env


def _run(args: list[str], where: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout, check=False, stdin=None
    )


@pytest.mark.parametrize("block", _of("python"))
def test_python_block_runs(block: Block) -> None:
    done = _run([sys.executable, "-c", block.text], block.where)
    assert done.returncode == 0, f"{block.where}: exit status {done.returncode}\n{done.stderr[-3000:]}"
    if block.output is not None:
        _compare(block.output.text, done.stdout, block.where)


def _commands(text: str) -> list[tuple[str, str, int]]:
    """``(command, expected output, expected exit status)`` per ``$`` line; ``# exit N`` after it says N."""
    out: list[tuple[str, str, int]] = []
    for chunk in re.split(r"^\$ ", text, flags=re.M)[1:]:
        command, _, output = chunk.partition("\n")
        status = 0
        if m := re.search(r"\s+# exit (\d+)$", command):
            command, status = command[: m.start()], int(m.group(1))
        out.append((command, output, status))
    return out


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One scratch folder per document, standing for /tmp in its commands: a page's later blocks see what
    its earlier ones made there, as a reader following it would, and nothing is shared with other runs."""
    return {name: tmp_path_factory.mktemp("doc") for name in DOCUMENTS}


@pytest.mark.parametrize("block", _of("console"))
def test_console_block_prints_what_it_shows(block: Block, scratch: dict[str, Path]) -> None:
    commands = _commands(block.text)
    assert commands, f"{block.where}: a console block shows commands as `$ COMMAND`"
    tmp = scratch[block.where.rpartition(":")[0]]
    for command, expected, status in commands:
        done = _run(["bash", "-c", f"{command.replace('/tmp/', f'{tmp}/')} 2>&1"], block.where)
        printed = done.stdout.replace(f"{tmp}/", "/tmp/")
        assert done.returncode == status, f"{block.where}: {command}: exit status {done.returncode}\n{printed}"
        _compare(expected, printed, f"{block.where}: {command}")


@pytest.mark.parametrize("block", _of("sh"))
def test_shell_block_runs(block: Block, scratch: dict[str, Path]) -> None:
    tmp = scratch[block.where.rpartition(":")[0]]
    script = block.text.replace("/tmp/", f"{tmp}/")
    done = _run(["bash", "-euo", "pipefail", "-c", script], block.where, SLOW_TIMEOUT_S if block.slow else TIMEOUT_S)
    assert done.returncode == 0, f"{block.where}: exit status {done.returncode}\n{done.stdout}{done.stderr}"
