"""modelseal.untrusted: the one escaping function for what reaches a terminal or a CI log."""

from __future__ import annotations

import pytest
from rich.console import Console

from modelseal.untrusted import untrusted


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain name.bin", "plain name.bin"),
        ("a\nb", "a\\x0ab"),
        ("a\rb", "a\\x0db"),
        ("\x1b[2J", "\\x1b[2J"),
        ("\x9b31m", "\\x9b31m"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),  # right-to-left override
        ("::error::x", "\\x3a:error::x"),
        ("  \t::set-output name=a::b", "  \t\\x3a:set-output name=a::b"),
        ("##[error]x", "\\x23#[error]x"),
        ("a::b", "a::b"),  # only at the start of a line is it a command
        (":x", ":x"),
    ],
)
def test_plain(text: str, shown: str) -> None:
    assert untrusted(text, markup=False) == shown


def test_multiline_keeps_line_breaks_and_checks_every_line() -> None:
    assert untrusted("one\n::error::two\r\n  ##[x]", markup=False, multiline=True) == (
        "one\n\\x3a:error::two\\x0d\n  \\x23#[x]"
    )


def test_markup_is_escaped_and_prints_as_written() -> None:
    console = Console(width=200, record=True, emoji=False)
    text = "x[/red] [bold]y[/bold] [link=mailto:a]z"
    console.print(untrusted(text))  # unescaped, "[/red]" raises MarkupError
    assert console.export_text().strip() == text


def test_limit_clips() -> None:
    assert untrusted("a" * 50, markup=False, limit=10) == "a" * 9 + "…"


def test_bytes_that_were_not_utf8_are_shown_as_bytes() -> None:
    # File names from the file system keep undecodable bytes as surrogates (surrogateescape).
    assert untrusted("m/\udcff\udc80.bin", markup=False) == "m/\\xff\\x80.bin"


@pytest.mark.parametrize("text", ["::error::pwned", "a\nb", "\x1b]8;;x\x07", "x\u202ey"])
def test_every_escaping_helper_is_the_one_escaping(text: str) -> None:
    from modelseal import fsio
    from modelseal.policy import loader
    from modelseal.publish import registry_http, verify_image

    expected = untrusted(text, markup=False)
    assert fsio.shown(text) == expected
    assert registry_http._plain(text) == expected
    assert verify_image._plain(text) == expected
    assert loader._printable(text) == expected
