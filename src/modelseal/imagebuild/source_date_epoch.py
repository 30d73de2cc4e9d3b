"""``SOURCE_DATE_EPOCH`` for every stage: a copy of the Dockerfile with ``ARG SOURCE_DATE_EPOCH``
after each FROM, and the map that turns the line numbers BuildKit prints for that copy back into
the original Dockerfile's."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from modelseal.imagebuild.dockerfile import Dockerfile, Instruction, arg_pairs

__all__ = ["SOURCE_DATE_EPOCH_ARG", "Injected", "inject_source_date_epoch"]

SOURCE_DATE_EPOCH_ARG = "ARG SOURCE_DATE_EPOCH"
"""The line :func:`inject_source_date_epoch` adds to each stage."""

_EXCERPT = re.compile(r"^ (?P<num> *\d+) \| (?P<mark>>>>|   ) (?P<text>.*)\Z", re.DOTALL)
_PARSE_ERROR = re.compile(r"(dockerfile parse error on line )(\d+)")
_LINE_IN_PARENS = re.compile(r"\(line (\d+)\)")


@dataclass(frozen=True)
class Injected:
    """A Dockerfile with ``ARG SOURCE_DATE_EPOCH`` added to each stage.

    ``line_map[n - 1]`` is the original line of line ``n`` of ``text`` (an added line maps to
    its stage's FROM). ``filename`` is the name BuildKit will print for ``text`` (the base
    name of the file it is written to); ``name`` is the original Dockerfile's.
    """

    text: str
    line_map: tuple[int, ...]
    name: str
    filename: str = "Dockerfile"
    added: frozenset[int] = frozenset()

    def original_line(self, new_line: int) -> int:
        """The original line number for ``new_line`` of :attr:`text`. BuildKit also shows
        the empty line after a final newline; lines past the end shift by the added count."""
        if 1 <= new_line <= len(self.line_map):
            return self.line_map[new_line - 1]
        if new_line > len(self.line_map):
            return new_line - len(self.added)
        return new_line

    def map_message(self, msg: str) -> str:
        """Rewrite the line numbers in BuildKit's output (one line or many) to the original
        Dockerfile's: ``Dockerfile:7`` headers (renamed to the original name), source
        excerpts `` 7 | >>> FOO``, ``dockerfile parse error on line 7`` and ``(line 7)``.
        Excerpt lines showing an added line are dropped."""
        header = re.compile(rf"(?<![\w.-])(/?){re.escape(self.filename)}:(\d+)\b")
        shown = PurePosixPath(self.name).name if self.name else self.filename
        out: list[str] = []
        for line in msg.splitlines(keepends=True):
            body = line.rstrip("\r\n")
            ending = line[len(body) :]
            excerpt = _EXCERPT.match(body)
            if excerpt is not None:
                number = int(excerpt.group("num"))
                if number in self.added and excerpt.group("mark") != ">>>":
                    continue
                # BuildKit prints " %3d | %s %s".
                mapped = f"{self.original_line(number):3d}"
                out.append(f" {mapped} | {excerpt.group('mark')} {excerpt.group('text')}{ending}")
                continue
            body = header.sub(
                lambda m: (
                    (m.group(1) + self.filename if m.group(1) else shown)
                    + f":{self.original_line(int(m.group(2)))}"
                ),
                body,
            )
            body = _PARSE_ERROR.sub(
                lambda m: m.group(1) + str(self.original_line(int(m.group(2)))), body
            )
            body = _LINE_IN_PARENS.sub(
                lambda m: f"(line {self.original_line(int(m.group(1)))})", body
            )
            out.append(body + ending)
        return "".join(out)


def _declares_epoch(item: Instruction, escape: str) -> bool:
    return item.keyword == "ARG" and any(
        key == "SOURCE_DATE_EPOCH" for key, _ in arg_pairs(item.args, escape)
    )


def inject_source_date_epoch(
    df: Dockerfile, text: str, *, filename: str = "Dockerfile"
) -> Injected:
    """Insert ``ARG SOURCE_DATE_EPOCH`` right after each FROM (after its last line), so that
    RUN steps of every stage see the build arg, unless the stage already declares it.

    ``text`` must be what ``df`` was parsed from; ``filename`` is the base name the result
    will be written under (BuildKit prints it in errors). A FROM that ends the file gets
    nothing: no step follows it.
    """
    lines = text.split("\n")
    real_count = len(lines) - 1 if lines[-1] == "" else len(lines)
    starts = [fl.line for fl in df.froms]
    insert_after: dict[int, int] = {}
    for k, fl in enumerate(df.froms):
        next_start = starts[k + 1] if k + 1 < len(starts) else None
        in_stage = [
            item
            for item in df.instructions
            if item.start_line > fl.line and (next_start is None or item.start_line < next_start)
        ]
        from_item = next(i for i in df.instructions if i.start_line == fl.line)
        if from_item.end_line >= real_count:
            continue
        if any(_declares_epoch(item, df.escape) for item in in_stage):
            continue
        insert_after[from_item.end_line] = fl.line

    new_lines: list[str] = []
    line_map: list[int] = []
    added: set[int] = set()
    for number, line in enumerate(lines, 1):
        new_lines.append(line)
        if number <= real_count:
            line_map.append(number)
        if number in insert_after:
            ending = "\r" if line.endswith("\r") else ""
            new_lines.append(SOURCE_DATE_EPOCH_ARG + ending)
            line_map.append(insert_after[number])
            added.add(len(line_map))
    return Injected("\n".join(new_lines), tuple(line_map), df.name, filename, frozenset(added))
