"""A griffe extension for the API pages: the package's docstrings are Markdown-friendly Google style, with two
reST habits that Markdown would render badly.

* Sphinx roles (``:class:`~snac_onnx.x.Y```, ``:meth:`flush```...) become inline code (``Y``, ``flush``);
  a leading ``~`` keeps the last name only, as Sphinx does.
* Lines of a doctest (``>>> code``) become a fenced ``pycon`` block instead of nested block quotes.

Only the rendered text changes; the docstrings in the package stay as written.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj|const|py:\w+):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    target = match.group(2)
    if match.group(1):
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _doctests(text: str) -> str:
    out: list[str] = []
    block: list[str] = []
    indent = ""
    for line in [*text.splitlines(), ""]:
        stripped = line.lstrip()
        if stripped.startswith((">>>", "...")) and (block or stripped.startswith(">>>")):
            if not block:
                indent = line[: len(line) - len(stripped)]
            block.append(line[len(indent) :])
            continue
        if block:
            out += [f"{indent}```pycon", *(indent + b for b in block), f"{indent}```"]
            block = []
        out.append(line)
    return "\n".join(out[:-1])


class SphinxRolesToCode(griffe.Extension):
    """Rewrite each docstring's roles and doctests before mkdocstrings parses it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None:
            docstring.value = _doctests(_ROLE.sub(_role, docstring.value))
