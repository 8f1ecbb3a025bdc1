"""palmbook.book.show_source: a chapter prints code exactly as written, comments kept, docstrings cut."""

from __future__ import annotations

import functools

import pytest

from palmbook.book import show_source, source


def documented(x: int) -> int:
    """A docstring the prose around the cell replaces.

    It spans several lines.
    """

    # a comment that explains why: it must survive
    y = x + 1  # and a trailing one
    return y * 2


def one_line_doc(x):
    "Single-quoted docstring."
    return x


def undocumented(x):
    # only a comment
    return x


def string_statement_later(x):
    y = x
    "not a docstring: a string statement after code"
    return y


def inline(x): "doc on the def line"; return x  # noqa: E702  # fmt: skip


@functools.lru_cache
def decorated(x):
    """Doc."""
    return x


class Counter:
    """A class docstring."""

    start = 0  # class attribute, commented

    def bump(self, n: int) -> int:
        """A method docstring."""
        # methods keep their comments too
        return self.start + n

    def text(self) -> str:
        return """
a multi-line string whose lines are indented less than the method
"""


def test_cuts_the_docstring_and_the_blank_line_after_it_and_keeps_every_comment():
    assert source(documented) == (
        "def documented(x: int) -> int:\n"
        "    # a comment that explains why: it must survive\n"
        "    y = x + 1  # and a trailing one\n"
        "    return y * 2"
    )


def test_one_line_and_single_quoted_docstrings_are_cut():
    assert source(one_line_doc) == "def one_line_doc(x):\n    return x"


def test_code_without_a_docstring_is_printed_unchanged():
    assert source(undocumented) == "def undocumented(x):\n    # only a comment\n    return x"


def test_only_the_leading_string_is_a_docstring():
    assert '"not a docstring: a string statement after code"' in source(string_statement_later)


def test_a_docstring_sharing_the_def_line_keeps_the_line():
    assert "return x" in source(inline) and source(inline).startswith("def inline(x):")


def test_decorators_stay():
    assert source(decorated) == "@functools.lru_cache\ndef decorated(x):\n    return x"


def test_a_class_loses_its_own_and_its_methods_docstrings_not_its_comments():
    text = source(Counter)
    assert '"""' not in text.split("def text")[0]
    assert "docstring" not in text
    assert "start = 0  # class attribute, commented" in text
    assert "# methods keep their comments too" in text
    assert text.startswith("class Counter:\n    start = 0")


def test_a_method_is_dedented_and_its_less_indented_string_lines_survive():
    assert source(Counter.bump) == (
        "def bump(self, n: int) -> int:\n    # methods keep their comments too\n    return self.start + n"
    )
    text = source(Counter.text)
    assert text.startswith("def text(self) -> str:\n")
    assert "\na multi-line string whose lines are indented less than the method\n" in text
    compile(text, "<method>", "exec")  # still valid Python after dedenting


def test_show_source_prints_the_source(capsys):
    show_source(documented)
    assert capsys.readouterr().out == source(documented) + "\n"


def test_objects_without_python_source_raise():
    with pytest.raises(TypeError):
        source(len)
