"""Splitting a long input into pieces one generation each can hold, at sentence boundaries.

The rule, in order:

1. Whitespace runs become one space; an empty line (a paragraph break) always ends a piece.
2. A sentence ends after ``.``, ``!``, ``?`` or ``…`` (any run of them, with closing quotes or brackets after it)
   followed by whitespace, and after ``。``, ``！`` or ``？`` (no space needed).
3. Sentences are packed in order into pieces of at most ``max_chars`` characters, joined by one space.
4. A sentence longer than ``max_chars`` is cut at the last ``,``, ``;`` or ``:`` before the limit, else at the
   last space, else at the limit.

Every character of the input but the collapsed whitespace is in exactly one piece, in order.
"""

from __future__ import annotations

import re

__all__ = ["split_text"]

_SENTENCE_END = re.compile(r"""(?:[.!?…]+["'”’)\]]*\s+|[。！？]+)""")
_CLAUSE = re.compile(r"[,;:]\s")


def _sentences(paragraph: str) -> list[str]:
    out, start = [], 0
    for match in _SENTENCE_END.finditer(paragraph):
        out.append(paragraph[start : match.end()].strip())
        start = match.end()
    if paragraph[start:].strip():
        out.append(paragraph[start:].strip())
    return [s for s in out if s]


def _cut(sentence: str, max_chars: int) -> list[str]:
    """A sentence in parts of at most ``max_chars`` (rule 4)."""
    parts = []
    while len(sentence) > max_chars:
        head = sentence[: max_chars + 1]
        clauses = [m.end() for m in _CLAUSE.finditer(head)]
        at = clauses[-1] if clauses else head.rfind(" ") + 1
        if at <= 0:
            at = max_chars
        parts.append(sentence[:at].strip())
        sentence = sentence[at:].strip()
    if sentence:
        parts.append(sentence)
    return parts


def split_text(text: str, max_chars: int) -> list[str]:
    """The pieces of ``text``, each at most ``max_chars`` characters (see the module docstring)."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        current = ""
        for sentence in _sentences(" ".join(paragraph.split())):
            for part in _cut(sentence, max_chars):
                if current and len(current) + 1 + len(part) <= max_chars:
                    current += " " + part
                else:
                    if current:
                        pieces.append(current)
                    current = part
        if current:
            pieces.append(current)
    return pieces
