"""Dockerfile parsing, base classification, SOURCE_DATE_EPOCH injection, error mapping.

Where a test says "BuildKit", the expected split or message was checked against the real
parser (Docker 26.1.5, BuildKit 0.13): the recorded outputs below are verbatim.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelseal.errors import ConfigError
from modelseal.imagebuild.bases import BaseRef, classify_bases
from modelseal.imagebuild.dockerfile import Dockerfile, FromLine, Instruction, parse_dockerfile
from modelseal.imagebuild.source_date_epoch import inject_source_date_epoch

DIGEST = "sha256:" + "ab" * 32


def split(text: str) -> list[tuple[str, int, int]]:
    return [
        (i.keyword, i.start_line, i.end_line) for i in parse_dockerfile(text, "Df").instructions
    ]


def kinds(df: Dockerfile, contexts: dict[str, str] | None = None) -> list[tuple[str, str]]:
    return [(b.kind, b.ref) for b in classify_bases(df, contexts or {})]


# --- splitting into instructions -----------------------------------------------------------


def test_instructions_keep_original_lines() -> None:
    df = parse_dockerfile("FROM scratch\nCOPY a.txt /\n\nfoobar x\n", "Df")
    assert df.instructions == (
        Instruction("FROM", "scratch", 1, 1),
        Instruction("COPY", "a.txt /", 2, 2),
        Instruction("FOOBAR", "x", 4, 4),  # unknown: kept for BuildKit to report
    )
    assert df.name == "Df"


def test_continuation_joins_lines_and_skips_comments_and_blank_lines() -> None:
    text = "FROM scratch\nRUN echo a \\\n  # a comment inside\n\n  b \\\n  c\nCOPY x /\n"
    df = parse_dockerfile(text, "Df")
    run = df.instructions[1]
    assert (run.keyword, run.start_line, run.end_line) == ("RUN", 2, 6)
    assert run.args == "echo a   b   c"
    assert df.instructions[2].start_line == 7


def test_continuation_marker_needs_to_end_the_line_and_not_be_escaped() -> None:
    assert split("FROM scratch\nRUN a \\ b\nRUN c\n") == [
        ("FROM", 1, 1),
        ("RUN", 2, 2),
        ("RUN", 3, 3),
    ]
    assert split("FROM scratch\nRUN a \\  \t\nb\n") == [("FROM", 1, 1), ("RUN", 2, 3)]
    # An escaped escape token does not continue the line (BuildKit).
    assert split("FROM scratch\nRUN a \\\\\nFOOBAR\n")[1:] == [("RUN", 2, 2), ("FOOBAR", 3, 3)]


def test_escape_directive_switches_to_backtick() -> None:
    text = "# escape=`\nFROM scratch\nRUN dir c:\\\nRUN echo `\n  done\n"
    df = parse_dockerfile(text, "Df")
    assert df.escape == "`"
    assert [(i.keyword, i.start_line, i.end_line) for i in df.instructions] == [
        ("FROM", 2, 2),
        ("RUN", 3, 3),  # a backslash no longer continues the line
        ("RUN", 4, 5),
    ]


def test_directives_only_count_at_the_top() -> None:
    # After another comment the escape line is just a comment (BuildKit).
    df = parse_dockerfile("# hello\n# escape=`\nFROM scratch\nRUN a \\\n b\n", "Df")
    assert df.escape == "\\"
    assert df.instructions[1].end_line == 5
    df = parse_dockerfile("# syntax=docker/dockerfile:1\n#escape = `\nFROM scratch\n", "Df")
    assert df.escape == "`"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# escape=x\nFROM scratch\n", r"Df:1: invalid escape token"),
        ("# escape=`\n# escape=`\nFROM scratch\n", r"Df:2: only one escape parser directive"),
    ],
)
def test_bad_directives_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_dockerfile(text, "Df")


def test_crlf_and_bom() -> None:
    assert split("\ufeffFROM scratch\r\nRUN a \\\r\n  b\r\n") == [("FROM", 1, 1), ("RUN", 2, 3)]


def test_heredoc_bodies_are_not_instructions() -> None:
    text = (
        "FROM scratch\n"
        "RUN <<EOF\n"
        "FROM evil\n"
        "EOF\n"
        "COPY <<-'END' <<\"DONE\" /dest/\n"
        "\tFROM evil2\n"
        "\tEND\n"
        "RUN nope\n"
        "DONE\n"
        "ONBUILD RUN <<EOF\n"
        "FROM evil3\n"
        "EOF\n"
        "RUN 2<<EOF\n"
        "x\n"
        "EOF\n"
        "RUN <<EOF \\\n"
        "  && true\n"
        "body\n"
        "EOF\n"
        "COPY x /\n"
    )
    df = parse_dockerfile(text, "Df")
    assert [(i.keyword, i.start_line, i.end_line) for i in df.instructions] == [
        ("FROM", 1, 1),
        ("RUN", 2, 4),
        ("COPY", 5, 9),  # two heredocs on one line, the first with tabs stripped
        ("ONBUILD", 10, 12),
        ("RUN", 13, 15),
        ("RUN", 16, 19),
        ("COPY", 20, 20),
    ]
    assert [f.image for f in df.froms] == ["scratch"]


@pytest.mark.parametrize(
    "run",
    [
        "RUN cat<<EOF",  # the word must start with <<
        'RUN ["cat", "<<EOF"]',  # JSON form takes no heredoc
        'RUN echo "<<EOF"',  # quoted
        "ENV A=<<EOF",  # only RUN, COPY and ADD take heredocs
    ],
)
def test_not_heredocs(run: str) -> None:
    # BuildKit parses the body lines as instructions here.
    assert split(f"FROM scratch\n{run}\nFOOBAR\nEOF\n")[2:] == [("FOOBAR", 3, 3), ("EOF", 4, 4)]


def test_unterminated_heredoc_runs_to_the_end() -> None:
    assert split("FROM scratch\nRUN <<EOF\necho\n") == [("FROM", 1, 1), ("RUN", 2, 3)]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "RUN echo\nARG A=1\n"])
def test_no_from_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="Dockerfile: no FROM instruction"):
        parse_dockerfile(text, "Dockerfile")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("FROM", "requires either one or three arguments"),
        ("FROM a b", "requires either one or three arguments"),
        ("FROM --platform linux/amd64 scratch", "requires either one or three arguments"),
        ("FROM a AS 1x", "invalid name for build stage"),
        ("FROM $NOPE", r"base name \(\$NOPE\) should not be blank"),
        ("FROM ${NOPE:?must_be_set}", "NOPE: must_be_set"),
        ("FROM ${A", "missing"),
    ],
)
def test_unreadable_from_lines_are_config_errors_naming_the_line(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"Df:2: .*{message}"):
        parse_dockerfile(f"# first\n{line}\n", "Df")


# --- FROM lines and ARG substitution -------------------------------------------------------


def test_from_lines() -> None:
    text = (
        "ARG REGISTRY=registry.example:5000\n"
        'ARG TAG="3.11"\n'
        "ARG FLAVOUR\n"
        "FROM --platform=linux/arm64 ${REGISTRY}/python:${TAG}-slim AS Build\n"
        "ARG TAG=ignored-inside-a-stage\n"
        "FROM $REGISTRY/runtime:${FLAVOUR:-min} as run\n"
        "FROM build\n"
    )
    df = parse_dockerfile(text, "Df")
    assert df.froms == (
        FromLine(
            4, "registry.example:5000/python:3.11-slim", "${REGISTRY}/python:${TAG}-slim",
            "build", "linux/arm64", 0,
        ),
        FromLine(6, "registry.example:5000/runtime:min", "$REGISTRY/runtime:${FLAVOUR:-min}",
                 "run", None, 1),
        FromLine(7, "build", "build", None, None, 2),
    )  # fmt: skip
    assert dict(df.global_args) == {
        "REGISTRY": "registry.example:5000",
        "TAG": "3.11",
        "FLAVOUR": None,
    }


def test_build_args_override_declared_global_args_only() -> None:
    text = "ARG TAG=3.11\nARG EXTRA\nFROM python:${TAG}${EXTRA}$UNDECLARED\n"
    df = parse_dockerfile(text, "Df", {"TAG": "3.12", "EXTRA": "-slim", "UNDECLARED": "-x"})
    assert df.froms[0].image == "python:3.12-slim"
    assert dict(df.global_args) == {"TAG": "3.11", "EXTRA": None}


def test_arg_defaults_see_earlier_args() -> None:
    text = "ARG V=3\nARG IMG=python:${V}.11 OTHER='a b'\nFROM $IMG\n"
    df = parse_dockerfile(text, "Df", build_args={"V": "4"})
    assert df.froms[0].image == "python:4.11"
    assert dict(df.global_args) == {"V": "3", "IMG": "python:3.11", "OTHER": "a b"}


@pytest.mark.parametrize(
    ("expr", "image"),
    [
        ("${SET:-d}", "x"),
        ("${EMPTY:-d}", "d"),
        ("${UNSET:-d}", "d"),
        ("${EMPTY-d}z", "z"),
        ("${UNSET-d}", "d"),
        ("${SET:+alt}", "alt"),
        ("a${EMPTY:+alt}", "a"),
        ("${SET+alt}", "alt"),
        ("${PATHY#*/}", "b/c"),
        ("${PATHY##*/}", "c"),
        ("${PATHY%/*}", "a/b"),
        ("${PATHY%%/*}", "a"),
        ('"${SET}"', "x"),
        ("'${SET}'", "${SET}"),
        ("\\$SET", "$SET"),
        ("$SET$", "x$"),
        ("img-$TARGETARCH", "img-$TARGETARCH"),  # BuildKit's own value, unknown here
        ("img-${BUILDOS:-linux}", "img-${BUILDOS:-linux}"),
    ],
)
def test_variable_expansion(expr: str, image: str) -> None:
    text = f"ARG SET=x\nARG EMPTY=\nARG PATHY=a/b/c\nFROM {expr}\n"
    assert parse_dockerfile(text, "Df").froms[0].image == image


def test_platform_args_can_be_given_a_default() -> None:
    df = parse_dockerfile("ARG TARGETARCH=arm64\nFROM img-$TARGETARCH\n", "Df")
    assert df.froms[0].image == "img-arm64"


# --- classification ------------------------------------------------------------------------


def test_each_kind_of_base() -> None:
    text = (
        "FROM scratch AS empty\n"
        f"FROM python@{DIGEST} AS pinned\n"
        f"FROM python:3.11@{DIGEST}\n"
        "FROM python:3.11 AS tagged\n"
        "FROM python\n"
        "FROM python:latest\n"
        "FROM pinned\n"
        "FROM Pinned\n"  # stage names are matched as written: this one is an image
        "FROM later\n"  # only earlier stages count
        "FROM scratch AS later\n"
        "FROM python@sha256:abc\n"  # not a full sha256 digest
    )
    assert kinds(parse_dockerfile(text, "Df")) == [
        ("scratch", "scratch"),
        ("digest", f"python@{DIGEST}"),
        ("digest", f"python:3.11@{DIGEST}"),
        ("unpinned", "python:3.11"),
        ("unpinned", "python"),
        ("unpinned", "python:latest"),
        ("stage", "pinned"),
        ("unpinned", "Pinned"),
        ("unpinned", "later"),
        ("scratch", "scratch"),
        ("unpinned", "python@sha256:abc"),
    ]


def test_named_contexts_replace_images_after_normalization() -> None:
    # BuildKit normalizes both names (docker.io/library/..., :latest dropped), checked with
    # --build-context docker.io/library/python:3.11=DIR and FROM python:3.11.
    text = (
        "FROM python:3.11\n"
        "FROM docker.io/library/python:latest\n"
        "FROM ghcr.io/org/img:1\n"
        "FROM python:3.12\n"
    )
    contexts = {
        "docker.io/library/python:3.11": "oci-layout:///l@" + DIGEST,
        "python:latest": "docker-image://python@" + DIGEST,
        "ghcr.io/org/img:1": "docker-image://x",
    }
    assert kinds(parse_dockerfile(text, "Df"), contexts) == [
        ("context", "docker.io/library/python:3.11"),
        ("context", "python:latest"),
        ("context", "ghcr.io/org/img:1"),
        ("unpinned", "python:3.12"),  # a context named "python:3.11" does not cover it
    ]


def test_a_context_named_like_a_stage_replaces_the_whole_stage() -> None:
    text = "FROM python:3.11 AS base\nFROM base\nFROM scratch AS out\n"
    assert kinds(parse_dockerfile(text, "Df"), {"base": "/prebuilt", "out": "/x"}) == [
        ("context", "base"),
        ("stage", "base"),  # an earlier stage wins over a context with the same name
        ("context", "out"),
    ]


def test_scratch_and_context_cannot_be_replaced() -> None:
    df = parse_dockerfile("FROM scratch\nFROM busybox AS context\n", "Df")
    assert kinds(df, {"scratch": "/x", "context": "/y"}) == [
        ("scratch", "scratch"),
        ("unpinned", "busybox"),
    ]


def test_classification_uses_substituted_names() -> None:
    text = "ARG BASE=python:3.11\nFROM ${BASE}\n"
    df = parse_dockerfile(text, "Df", build_args={"BASE": f"python@{DIGEST}"})
    assert classify_bases(df, {}) == (BaseRef(df.froms[0], "digest", f"python@{DIGEST}"),)


# --- SOURCE_DATE_EPOCH injection -----------------------------------------------------------


def test_injection_adds_an_arg_to_each_stage() -> None:
    text = (
        "ARG BASE=scratch\n"  # 1
        "FROM $BASE AS a\n"  # 2
        "RUN one\n"  # 3
        "FROM \\\n"  # 4
        "  a\n"  # 5
        "ARG SOURCE_DATE_EPOCH\n"  # 6: declared already
        "RUN two\n"  # 7
        "FROM a\n"  # 8
        "RUN three\n"  # 9
        "FROM a\n"  # 10: ends the file, nothing to pass the arg to
    )
    df = parse_dockerfile(text, "Df")
    injected = inject_source_date_epoch(df, text)
    assert injected.text == (
        "ARG BASE=scratch\n"
        "FROM $BASE AS a\n"
        "ARG SOURCE_DATE_EPOCH\n"
        "RUN one\n"
        "FROM \\\n"
        "  a\n"
        "ARG SOURCE_DATE_EPOCH\n"
        "RUN two\n"
        "FROM a\n"
        "ARG SOURCE_DATE_EPOCH\n"
        "RUN three\n"
        "FROM a\n"
    )
    assert injected.line_map == (1, 2, 2, 3, 4, 5, 6, 7, 8, 8, 9, 10)
    assert [injected.original_line(n) for n in (1, 3, 4, 11, 12, 13)] == [1, 2, 3, 9, 10, 11]


def test_injection_checks_each_stage_separately() -> None:
    text = "FROM scratch\nARG A SOURCE_DATE_EPOCH=1\nFROM scratch\nRUN x\n"
    injected = inject_source_date_epoch(parse_dockerfile(text, "Df"), text)
    assert injected.text == "FROM scratch\nARG A SOURCE_DATE_EPOCH=1\nFROM scratch\n" + (
        "ARG SOURCE_DATE_EPOCH\nRUN x\n"
    )


def test_injection_keeps_crlf_and_a_missing_final_newline() -> None:
    text = "FROM scratch\r\nRUN a"
    injected = inject_source_date_epoch(parse_dockerfile(text, "Df"), text)
    assert injected.text == "FROM scratch\r\nARG SOURCE_DATE_EPOCH\r\nRUN a"
    assert injected.line_map == (1, 1, 2)


def test_injected_text_parses_to_the_same_instructions() -> None:
    text = "# escape=`\nFROM scratch AS a\nRUN echo `\n  x\nCOPY <<EOF /f\nFROM x\nEOF\n"
    df = parse_dockerfile(text, "Df")
    injected = inject_source_date_epoch(df, text)
    again = parse_dockerfile(injected.text, "Df")
    kept = [i for i in again.instructions if i.args != "SOURCE_DATE_EPOCH"]
    assert [
        (
            i.keyword,
            i.args,
            injected.original_line(i.start_line),
            injected.original_line(i.end_line),
        )
        for i in kept
    ] == [(i.keyword, i.args, i.start_line, i.end_line) for i in df.instructions]


# --- mapping BuildKit's messages back ------------------------------------------------------

# Recorded: the Dockerfile below, injected, written as Dockerfile and built.
UNKNOWN_INSTRUCTION = "FROM scratch AS a\nCOPY a.txt /\n\nFROM a\nCOPY a.txt /b\nFOOBAR x\n"
UNKNOWN_INSTRUCTION_OUTPUT = "\n".join(
    [
        "Dockerfile:8",
        "--------------------",
        "   6 |     ARG SOURCE_DATE_EPOCH",
        "   7 |     COPY a.txt /b",
        "   8 | >>> FOOBAR x",
        "   9 |     ",
        "--------------------",
        "ERROR: failed to solve: dockerfile parse error on line 8: unknown instruction: FOOBAR",
        "",
    ]
)
UNKNOWN_INSTRUCTION_MAPPED = "\n".join(
    [
        "t1:6",
        "--------------------",
        "   5 |     COPY a.txt /b",
        "   6 | >>> FOOBAR x",
        "   7 |     ",
        "--------------------",
        "ERROR: failed to solve: dockerfile parse error on line 6: unknown instruction: FOOBAR",
        "",
    ]
)

RUN_FAILURE = (
    "FROM scratch\n" + "".join(f"# c{n}\n" for n in range(2, 98)) + "FROM scratch\n"
    "RUN echo a \\\n  b\nCOPY a.txt /\n"
)
RUN_FAILURE_OUTPUT = """\
------
 > [stage-1 1/2] RUN echo a   b:
0.066 runc run failed: unable to start container process: exec: "/bin/sh": stat /bin/sh: no such file or directory
------
Dockerfile:101
--------------------
 100 |     ARG SOURCE_DATE_EPOCH
 101 | >>> RUN echo a \\
 102 | >>>   b
 103 |     COPY a.txt /
--------------------
ERROR: failed to solve: process "/bin/sh -c echo a   b" did not complete successfully: exit code: 1
"""
RUN_FAILURE_MAPPED = """\
------
 > [stage-1 1/2] RUN echo a   b:
0.066 runc run failed: unable to start container process: exec: "/bin/sh": stat /bin/sh: no such file or directory
------
Dockerfile.prod:99
--------------------
  99 | >>> RUN echo a \\
 100 | >>>   b
 101 |     COPY a.txt /
--------------------
ERROR: failed to solve: process "/bin/sh -c echo a   b" did not complete successfully: exit code: 1
"""


def test_map_message_on_a_parse_error() -> None:
    df = parse_dockerfile(UNKNOWN_INSTRUCTION, "docker/t1")
    injected = inject_source_date_epoch(df, UNKNOWN_INSTRUCTION)
    assert injected.map_message(UNKNOWN_INSTRUCTION_OUTPUT) == UNKNOWN_INSTRUCTION_MAPPED


def test_map_message_on_a_failed_step() -> None:
    df = parse_dockerfile(RUN_FAILURE, "ci/Dockerfile.prod")
    injected = inject_source_date_epoch(df, RUN_FAILURE)
    assert injected.map_message(RUN_FAILURE_OUTPUT) == RUN_FAILURE_MAPPED


def test_map_message_line_by_line() -> None:
    df = parse_dockerfile(UNKNOWN_INSTRUCTION, "Dockerfile")
    injected = inject_source_date_epoch(df, UNKNOWN_INSTRUCTION)
    mapped = [injected.map_message(line) for line in UNKNOWN_INSTRUCTION_OUTPUT.splitlines()]
    assert mapped[0] == "Dockerfile:6"
    assert mapped[2] == ""  # the added line
    assert mapped[4] == "   6 | >>> FOOBAR x"
    assert mapped[-1].endswith("parse error on line 6: unknown instruction: FOOBAR")
    # Warnings of newer BuildKit say "(line N)"; paths keep their directory.
    assert injected.map_message(" - FromAsCasing: casing does not match (line 8)") == (
        " - FromAsCasing: casing does not match (line 6)"
    )
    assert injected.map_message("at /w/dockerfile/Dockerfile:8") == "at /w/dockerfile/Dockerfile:6"
    assert injected.map_message("#5 0.1 /bin/sh: line 8: x: not found") == (
        "#5 0.1 /bin/sh: line 8: x: not found"  # a shell's own line numbers stay
    )


# --- robustness ----------------------------------------------------------------------------

_WORDS = st.sampled_from(
    [
        "FROM", "from", "RUN", "COPY", "ADD", "ARG", "ONBUILD", "AS", "as", "scratch",
        "python:3.11", "$A", "${A:-x}", "${A", "<<EOF", "<<-EOF", "<<'EOF'", "EOF", "\tEOF",
        "\\", "`", "#", "# escape=`", "# escape=\\", "--platform=x", "[\"a\"]", "'", '"',
        "=", "A=1", "SOURCE_DATE_EPOCH", "\r", "\ufeff", " ",
    ]
)  # fmt: skip
_LINES = st.lists(st.lists(_WORDS, max_size=5).map(" ".join), max_size=12).map("\n".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet=string.printable), _LINES))
def test_parse_only_ever_raises_config_error(text: str) -> None:
    try:
        df = parse_dockerfile(text, "Df", {"A": "b"})
    except ConfigError:
        return
    lines = max(1, len(text.split("\n")))
    previous_end = 0
    for item in df.instructions:
        assert previous_end < item.start_line <= item.end_line <= lines
        previous_end = item.end_line
    classify_bases(df, {"python:3.11": "x", "a": "y"})
    injected = inject_source_date_epoch(df, text)
    assert all(1 <= n <= lines for n in injected.line_map)
    injected.map_message("Dockerfile:3\n   3 | >>> x\n")


@settings(max_examples=200, deadline=None)
@given(_LINES)
def test_injection_round_trips(text: str) -> None:
    try:
        df = parse_dockerfile(text, "Df")
    except ConfigError:
        return
    injected = inject_source_date_epoch(df, text)
    again = parse_dockerfile(injected.text, "Df")
    kept = [i for i in again.instructions if injected.original_line(i.start_line) != 0]
    added = [i for i in again.instructions if i.start_line in injected.added]
    assert all(i.keyword == "ARG" and i.args == "SOURCE_DATE_EPOCH" for i in added)
    originals = [
        (i.keyword, injected.original_line(i.start_line), injected.original_line(i.end_line))
        for i in kept
        if i.start_line not in injected.added
    ]
    assert originals == [(i.keyword, i.start_line, i.end_line) for i in df.instructions]
