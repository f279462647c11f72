"""MkDocs hooks: the reference pages are generated from the code when the site is built (scripts/gen_docs.py),
so the site's are always the code's; the copies committed under docs/reference/ (for reading on GitHub) are
replaced by fresh ones, and tests/test_docs.py fails when a committed copy is stale."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def _gen_docs() -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # import this checkout's streamprep
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def on_files(files: Files, config: Any) -> Files:
    gen = _gen_docs()
    for uri, text in gen.pages().items():
        if (committed := files.get_file_from_path(uri)) is not None:
            files.remove(committed)
        files.append(File.generated(config, uri, content=text))
    for uri, path in gen.SITE_FILES.items():
        files.append(File.generated(config, uri, abs_src_path=str(ROOT / path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    gen = _gen_docs()
    return markdown.replace(gen.MODULE_TABLE_MARK, gen.module_table())
