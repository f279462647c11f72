"""Generate the reference pages of the documentation from the code, so they cannot drift from it.

- the configuration reference, from the pydantic models of the config (types, defaults, constraints, and the
  ``Field(description=...)`` or, where there is none, the comment beside or above each field in the source);
  it opens with one complete TOML file of every key at its default, which tests/test_docs.py parses and
  validates with streamprep's own config loader;
- the CLI reference, from the argparse parser the command line builds;
- the Python API page (mkdocstrings directives) and the module table of the architecture page.

Every module path the documentation names is in THIS file (the constants below), so moving a module means
editing one place. scripts/mkdocs_hooks.py calls :func:`pages` when MkDocs builds the site. The pages are
also committed under docs/reference/ so they can be read on GitHub: after changing the config, the command
line or a docstring of the API, run ``python scripts/gen_docs.py docs`` (tests/test_docs.py fails while a
committed page differs from what the code generates).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import enum
import functools
import importlib
import inspect
import io
import json
import sys
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parent.parent

# ---- every module path the documentation refers to -------------------------------------------------------
CONFIG_MODEL = "streamprep.config.schema:Config"  # the root of the TOML file
CONFIG_PARSE = "streamprep.config.schema:parse"  # dict -> Config, raising ConfigError (what `run --config` uses)
BUNDLED_MODELS = "streamprep.config.schema:BUNDLED_MODELS"
CLI_PARSER = "streamprep.cli.main:_parser"  # builds the argparse parser of `streamprep`

# Values for the keys that have no default (required ones, and a few tables that only exist when given),
# used in the example file. They are examples: the tests validate the file they end up in.
EXAMPLES: dict[str, Any] = {
    "device": "edge-01",
    "sources.url": "recordings/demo_720p.mp4",
    "sources.id": "door",
    "sources.zones.name": "driveway",
    "sources.zones.polygon": [[0.0, 0.5], [0.6, 0.5], [0.6, 1.0], [0.0, 1.0]],
    "sources.lines.name": "gate",
    "sources.lines.points": [[0.5, 0.0], [0.5, 1.0]],
    "models.NAME.backend": "kserve",
    "models.NAME.kserve.url": "grpc://127.0.0.1:8001",
    "models.NAME.kserve.model": "ssd",
    "output.mqtt.url": "mqtt://127.0.0.1:1883",
}


def _load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


# ---- the configuration reference ---------------------------------------------------------------------------


@functools.cache
def _comments(cls: type) -> dict[str, str]:
    """The comment beside each field of ``cls`` (or the comment lines just above it), from its source."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    by_line: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            by_line[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    out: dict[str, str] = {}
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    for stmt in body.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        text = by_line.get(stmt.end_lineno or stmt.lineno)
        if text is None:  # full-line comments directly above
            above: list[str] = []
            n = stmt.lineno - 1
            while n >= 1 and lines[n - 1].strip().startswith("#"):
                above.insert(0, by_line.get(n, ""))
                n -= 1
            text = " ".join(above) if above else None
        if text:
            out[stmt.target.id] = text
    return out


def _describe(cls: type[BaseModel], name: str, info: FieldInfo) -> str:
    if info.description:
        return info.description
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            return _comments(klass).get(name, "")
    return ""


def _strip_none(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007
    return tp


def _model_of(tp: Any) -> type[BaseModel] | None:
    """The config table a field holds (a model, a list of models or a dict of models), or None."""
    tp = _strip_none(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if typing.get_origin(tp) in (tuple, list, dict):
        inner = typing.get_args(tp)[-1 if typing.get_origin(tp) is dict else 0]
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return None


def _type_name(tp: Any) -> str:
    tp = _strip_none(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and len(set(args)) == 1:
            return f"list of {len(args)} {_type_name(args[0])}"
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {_type_name(typing.get_args(tp)[1])}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " \\| ".join(json.dumps(m.value) for m in tp)
    names = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _constraints(info: FieldInfo) -> str:
    words = {
        annotated_types.Ge: ">=",
        annotated_types.Gt: ">",
        annotated_types.Le: "<=",
        annotated_types.Lt: "<",
        annotated_types.MinLen: "length >=",
        annotated_types.MaxLen: "length <=",
    }
    out = []
    for meta in info.metadata:
        for kind, word in words.items():
            if isinstance(meta, kind):
                value = getattr(meta, dataclasses.fields(meta)[0].name)
                out.append(f"{word} {value}")
    return ", ".join(out)


def _default(info: FieldInfo) -> Any:
    """The default as it would be written in TOML, or PydanticUndefined when there is none to write."""
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        return value if value in ({}, [], ()) else PydanticUndefined  # e.g. the host name: not a constant
    value = info.default
    if value is PydanticUndefined or value is None or isinstance(value, BaseModel):
        return PydanticUndefined
    bundled = _load(BUNDLED_MODELS)
    if isinstance(value, Path) and value.parent == bundled:
        return value.stem  # a bundled model's name
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return str(value) if isinstance(value, Path) else value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


# Optional tables (None by default) written out in the example file; the others are shown commented out.
EXAMPLE_TABLES = {"output.mqtt", "events", "models.NAME.kserve"}
# [models.NAME] takes every key of [model]: the example shows one model on an inference server
EXAMPLE_MODELS_NAME = "remote"
EXAMPLE_KEYS = {"models.NAME": {"backend", "kserve"}}


class _Walk:
    """Walks the config models: one TOML example and one markdown table per table of the file."""

    def __init__(self) -> None:
        self.toml: list[str] = []
        self.tables: list[str] = []

    def table(self, cls: type[BaseModel], key: str, header: str, note: str = "", hidden: bool = False) -> None:
        """``key``: the dotted path of the table (EXAMPLES' keys); ``header``: its TOML header; ``hidden``: not
        in the example file (an optional table shown elsewhere in it)."""
        doc = inspect.cleandoc(cls.__doc__) if "__doc__" in vars(cls) and cls.__doc__ else ""
        toml: list[str] = []
        if header:
            toml += ["", header.replace(".NAME", f".{EXAMPLE_MODELS_NAME}")]
        only = EXAMPLE_KEYS.get(key)
        if only is not None:
            toml.append("# ...and any key of [model]")
        rows = ["| key | type | default | description |", "|---|---|---|---|"]
        later: list[tuple[type[BaseModel], str, str, str, bool]] = []
        width = 34
        for name, info in cls.model_fields.items():
            path = f"{key}.{name}" if key else name
            sub = _model_of(info.annotation)
            text = _describe(cls, name, info)
            if sub is not None:
                origin = typing.get_origin(_strip_none(info.annotation))
                skip = hidden or (only is not None and name not in only)
                optional = info.default is None and path not in EXAMPLE_TABLES
                if origin is dict:
                    later.append((sub, f"{path}.NAME", f"[{path}.NAME]", text, skip))
                elif origin in (tuple, list):
                    later.append((sub, path, f"[[{path}]]", text, skip))
                else:
                    later.append((sub, path, f"[{path}]", text, skip or optional))
                continue
            default = _default(info)
            kind = _type_name(info.annotation)
            limits = _constraints(info)
            shown = "" if default is PydanticUndefined else f"`{_toml_value(default)}`"
            if info.default_factory is not None and default is PydanticUndefined:
                shown = "the host name" if name == "device" else "computed"
            cell = text.replace("|", "\\|").replace("[", "\\[")
            rows.append(
                f"| `{name}` | {kind}{' (' + limits + ')' if limits else ''}"
                f"{' **required**' if info.is_required() else ''} | {shown} | {cell} |"
            )
            if only is not None and name not in only:
                continue
            if path in EXAMPLES:
                line = f"{name} = {_toml_value(EXAMPLES[path])}"
            elif default is not PydanticUndefined:
                line = f"{name} = {_toml_value(default)}"
            else:
                plain = kind.replace(" \\| ", " | ")
                line = f"# {name} = ({plain})"
            toml.append(line.ljust(width) + f"  # {text}" if text else line)
        if not hidden:
            self.toml += toml
        self.tables += [f"### `{header or 'top level'}`", ""]
        if doc or note:
            self.tables += [". ".join(x.rstrip(".") for x in (note, doc.replace("\n", " ")) if x) + ".", ""]
        self.tables += [*rows, ""]
        for sub, path, sub_header, text, hidden in later:
            self.table(sub, path, sub_header, text, hidden)


def config_example() -> str:
    """One TOML file with every key: its default, an example value, or (no default) commented out."""
    walk = _Walk()
    walk.table(_load(CONFIG_MODEL), "", "")
    return "\n".join(walk.toml).strip() + "\n"


def config_reference() -> str:
    walk = _Walk()
    walk.table(_load(CONFIG_MODEL), "", "")
    example = "\n".join(walk.toml).strip() + "\n"
    return "\n".join(
        [
            "# Configuration reference",
            "",
            "<!-- generated by scripts/gen_docs.py from the config's pydantic models: edit those, not this -->",
            "",
            "A TOML file (`streamprep run --config FILE`) says the same as the flags; flags win. Unknown keys and",
            "bad values are refused with one line naming the key",
            "(`streamprep: error: config error: model.batch: Input should be greater than or equal to 1`).",
            "`streamprep check --config FILE` validates a file and everything it names without starting anything.",
            "",
            "## Every key, in one file",
            "",
            "Each key at its default; keys without a default are commented out with their type, and a few keys",
            "that must be given show an example value. The file is valid as it stands (the tests load it with",
            "streamprep's own config loader), so copy it and delete what you do not change.",
            "",
            "```toml",
            example.rstrip("\n"),
            "```",
            "",
            "## Tables",
            "",
            *walk.tables,
        ]
    )


# ---- the CLI reference -------------------------------------------------------------------------------------


def _arg_row(action: argparse.Action) -> str | None:
    if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
        return None
    if action.option_strings:
        name = ", ".join(action.option_strings)
        if action.nargs != 0:
            name += f" {action.metavar or action.dest.upper()}"
    else:
        name = str(action.metavar or action.dest)
        if action.nargs in ("*", "?"):
            name = f"[{name}]" + ("..." if action.nargs == "*" else "")
    text = action.help or ""
    if action.choices and not isinstance(action.choices, dict):
        text += f" (one of {', '.join(map(str, action.choices))})"
    if action.default not in (None, False, argparse.SUPPRESS) and not isinstance(action, argparse._HelpAction):
        text += f" (default: {action.default})"
    if action.required and action.option_strings:
        text += " (required)"
    cell = text.replace("|", "\\|").replace("[", "\\[")
    return f"| `{name}` | {cell} |"


def cli_reference() -> str:
    parser: argparse.ArgumentParser = _load(CLI_PARSER)()
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=110)
    out = [
        "# CLI reference",
        "",
        "<!-- generated by scripts/gen_docs.py from the command line's argparse parser: edit that, not this -->",
        "",
        "Every flag of `run` and `check` overrides the config key of the same name (see the",
        "[configuration reference](configuration.md)). Exit codes are listed under",
        "[Operations](../operations.md#exit-codes).",
        "",
        "## `streamprep`",
        "",
        "| argument | meaning |",
        "|---|---|",
        *[row for a in parser._actions if (row := _arg_row(a))],
        "",
    ]
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in subs._choices_actions}
    for name, sub in subs.choices.items():
        sub.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=110)
        out += [
            f"## `streamprep {name}`",
            "",
            (helps.get(name) or "").capitalize() + ".",
            "",
            "```text",
            sub.format_usage().strip(),
            "```",
            "",
            "| argument | meaning |",
            "|---|---|",
            *[row for a in sub._actions if (row := _arg_row(a))],
            "",
        ]
    return "\n".join(out)


# ---- the API page and the architecture table --------------------------------------------------------------


def api_reference() -> str:
    """One entry per name of ``streamprep.__all__`` (the public surface), grouped by the module it lives in."""
    import streamprep

    out = [
        "# Python API reference",
        "",
        "<!-- generated by scripts/gen_docs.py from streamprep's public names and their docstrings -->",
        "",
        "How to use it, with examples that run: [Python API](../python.md). These are the names `streamprep`",
        "exports (`streamprep.stream`, `streamprep.Result`...); everything else is internal and may change.",
        "",
    ]
    for module, names in streamprep._EXPORTS.items():
        out += [f"## `{module}`", ""]
        for name in names:
            out += [
                f"::: {module}.{name}",
                "    options:",
                "      show_root_heading: true",
                "      heading_level: 3",
                "",
            ]
    return "\n".join(out)


def _first_line(path: Path) -> str:
    """The first line of a module's docstring (a package's ``__init__``)."""
    import ast

    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().splitlines()[0].replace("|", "\\|") if doc.strip() else ""


def layers() -> list[list[str]]:
    """The layers of ``.importlinter``, highest first, each a list of packages."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    rows = parser["importlinter:contract:layers"]["layers"].strip().splitlines()
    return [[p.strip().removeprefix("streamprep.") for p in row.split("|")] for row in rows]


def module_table() -> str:
    """Every module, by layer (lowest first) and folder, with the first line of its docstring."""
    package = ROOT / "streamprep"
    out = ["| layer | module | what it is |", "|---|---|---|"]
    for row in reversed(layers()):
        first = True
        for name in row:
            folder = package / name
            paths = [folder.with_suffix(".py")] if not folder.is_dir() else sorted(folder.rglob("*.py"))
            for path in paths:
                if path.name == "__init__.py" and path.parent != folder:
                    continue
                rel = path.relative_to(ROOT).as_posix()
                label = " / ".join(row) if first else ""
                out.append(f"| {label} | `{rel}` | {_first_line(path)} |")
                first = False
    return "\n".join(out)


# src_uri under docs/ -> the function making it; docs/hooks.py adds them to the site
PAGES: dict[str, Callable[[], str]] = {
    "reference/configuration.md": config_reference,
    "reference/cli.md": cli_reference,
    "reference/api.md": api_reference,
}
# repository files published with the site (site path -> repository path), so pages can link to them
SITE_FILES = {
    "schemas/result-3.json": "streamprep/schemas/result-3.json",
    "schemas/result-2.json": "streamprep/schemas/result-2.json",
    "schemas/result-1.json": "streamprep/schemas/result-1.json",
    "schemas/event-1.json": "streamprep/schemas/event-1.json",
}
MODULE_TABLE_MARK = "<!-- module table: generated by scripts/gen_docs.py (from the folders) -->"


def pages() -> dict[str, str]:
    return {uri: make() for uri, make in PAGES.items()}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: gen_docs.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    for uri, text in pages().items():
        (out / uri).parent.mkdir(parents=True, exist_ok=True)
        (out / uri).write_text(text, encoding="utf-8")
        print(out / uri)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv[1:]))
