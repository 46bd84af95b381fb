"""MkDocs hooks: the architecture page's module map, generated at build time from the package's own docstrings.

A page that holds the line ``<!-- module-map -->`` gets, in its place, one table per package folder with one row
per module of ``snac_onnx/``: its name and the first paragraph of its docstring (the module's job). The map is read
with ``ast`` (nothing is imported), so it is current whenever the site is built, and a module without a docstring
fails the build.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent / "snac_onnx"
MARKER = "<!-- module-map -->"

FOLDERS = {
    "": "`snac_onnx`: the core, and the command line, corpus and fork modules",
    "model": "`snac_onnx.model`: loading a model",
    "files": "`snac_onnx.files`: file formats",
    "stream": "`snac_onnx.stream`: streaming decode",
    "serve": "`snac_onnx.serve`: the server (`[serve]` extra)",
}


def _job(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    if not doc:
        raise ValueError(f"{path} has no module docstring: the architecture page's module map needs one")
    first = doc.strip().split("\n\n", 1)[0].replace("\n", " ")
    return re.sub(r":(?:class|func|meth|attr|mod|data):`~?([^`]+)`", r"`\1`", first)


def module_map() -> str:
    """The module map as Markdown tables, one per folder of the package."""
    parts: list[str] = []
    for folder, title in FOLDERS.items():
        base = PACKAGE / folder if folder else PACKAGE
        files = sorted(p for p in base.glob("*.py") if p.name != "__main__.py")
        dotted = f"snac_onnx.{folder}" if folder else "snac_onnx"
        parts += [f"**{title}**", "", "| module | its job |", "|---|---|"]
        for path in files:
            name = dotted if path.stem == "__init__" else f"{dotted}.{path.stem}"
            job = _job(path).replace("|", "\\|")
            parts.append(f"| `{name}` | {job} |")
        parts.append("")
    missing = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} - set(FOLDERS)
    if missing:
        raise ValueError(f"snac_onnx has packages the module map does not list: {sorted(missing)} (docs/hooks.py)")
    return "\n".join(parts)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Put the module map where the page asks for it."""
    return markdown.replace(MARKER, module_map()) if MARKER in markdown else markdown
