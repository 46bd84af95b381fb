"""Long input split into pieces at sentence boundaries (snac_onnx.serve.sentences): the documented rule."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from snac_onnx.serve.sentences import split_text


def test_sentences_are_packed_in_order_up_to_the_limit():
    text = "Hello there. How are you? I am fine!  Thanks.\n\nA new paragraph."
    assert split_text(text, 200) == ["Hello there. How are you? I am fine! Thanks.", "A new paragraph."]
    assert split_text(text, 30) == ["Hello there. How are you?", "I am fine! Thanks.", "A new paragraph."]


def test_closing_quotes_ellipses_and_cjk_end_sentences():
    assert split_text('He said "stop." Then... nothing. 你好。再见！', 16) == [
        'He said "stop."', "Then... nothing.", "你好。 再见！"
    ]
    assert split_text('"Go!" she said. Fine.', 15) == ['"Go!" she said.', "Fine."]
    assert split_text("你好。再见！", 3) == ["你好。", "再见！"]


def test_a_long_sentence_is_cut_at_a_clause_then_a_space():
    long = "one two three, four five six; seven eight nine ten eleven twelve"
    assert split_text(long, 20) == ["one two three,", "four five six;", "seven eight nine ten", "eleven twelve"]
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_abbreviation_like_dots_without_a_space_do_not_split():
    assert split_text("Version 2.5 is out. See e.g.this.", 200) == ["Version 2.5 is out. See e.g.this."]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab c.!?,;\n…。")), max_size=300), st.integers(5, 60))
def test_every_character_is_kept_in_order_and_pieces_fit(text, max_chars):
    pieces = split_text(text, max_chars)
    assert all(0 < len(p) <= max_chars for p in pieces)
    assert re.sub(r"\s+", "", "".join(pieces)) == re.sub(r"\s+", "", text)
