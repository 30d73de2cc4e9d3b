"""Workflow commands: ``::error``/``::warning`` annotations with GitHub's escaping, the
``$GITHUB_OUTPUT`` and ``$GITHUB_STEP_SUMMARY`` files, and the stop-commands window that keeps
what a run prints (build logs, finding titles) from being taken for commands."""

from __future__ import annotations

import contextlib
import secrets
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from modelseal import fsio
from modelseal.untrusted import untrusted

__all__ = ["Annotation", "Workflow", "escape_data", "escape_property", "format_output"]


def escape_data(text: str) -> str:
    """Escape a workflow command's message (GitHub's toolkit ``escapeData``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command property value (``escapeProperty``): also ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


@dataclass(frozen=True)
class Annotation:
    """One ``::error``/``::warning`` annotation."""

    level: str  # "error" | "warning" | "notice"
    message: str
    title: str | None = None
    file: str | None = None
    line: int | None = None
    col: int | None = None

    def command(self) -> str:
        """The workflow command line."""
        props = []
        if self.file:
            props.append(f"file={escape_property(_inert(self.file))}")
            if self.line:
                props.append(f"line={self.line}")
                if self.col:
                    props.append(f"col={self.col}")
        if self.title:
            props.append(f"title={escape_property(_inert(self.title))}")
        head = f"::{self.level} {','.join(props)}" if props else f"::{self.level}"
        return f"{head}::{escape_data(_inert(self.message))}"


def _inert(text: str) -> str:
    """Annotation text without terminal controls (line breaks stay: escape_data encodes them)."""
    return untrusted(text, markup=False, multiline=True)


def format_output(name: str, value: str) -> str:
    """One ``$GITHUB_OUTPUT`` entry in the multi-line form, with a random delimiter so a value
    cannot end the entry early and set other outputs."""
    delimiter = f"ghadelimiter_{uuid.uuid4()}"
    if delimiter in value or delimiter in name:  # pragma: no cover - 122 random bits
        raise ValueError("output value contains its delimiter")
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


@dataclass
class Workflow:
    """Where the runner wants outputs, summary and commands."""

    stdout: TextIO
    output_file: Path | None
    summary_file: Path | None
    in_actions: bool
    workspace: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str], stdout: TextIO) -> Workflow:
        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        return cls(
            stdout=stdout,
            output_file=path("GITHUB_OUTPUT"),
            summary_file=path("GITHUB_STEP_SUMMARY"),
            in_actions=env.get("GITHUB_ACTIONS") == "true",
            workspace=Path(env.get("GITHUB_WORKSPACE") or Path.cwd()),
        )

    def annotate(self, annotations: Sequence[Annotation]) -> None:
        for a in annotations:
            self.stdout.write(a.command() + "\n")
        self.stdout.flush()

    def write_outputs(self, outputs: Mapping[str, str]) -> None:
        # Appended, as the runner expects, but never through a link (fsio.open_append).
        if self.output_file is None:
            return
        fsio.append_text(
            self.output_file, "".join(format_output(name, v) for name, v in outputs.items())
        )

    def write_summary(self, text: str) -> None:
        if self.summary_file is None:
            return
        fsio.append_text(self.summary_file, text)

    @contextlib.contextmanager
    def commands_off(self) -> Iterator[None]:
        """Stop the runner from acting on workflow commands while the pipeline prints: build
        logs and finding titles come from the code and images under scan, and a line of theirs
        starting with ``::`` must not become an annotation, a mask or an output."""
        if not self.in_actions:
            yield
            return
        token = secrets.token_hex(16)
        self.stdout.write(f"::stop-commands::{token}\n")
        self.stdout.flush()
        try:
            yield
        finally:
            sys.stderr.flush()
            self.stdout.write(f"::{token}::\n")
            self.stdout.flush()

    def log_error(self, text: str) -> None:
        """An error for the log, printed inside the stop-commands window and escaped: it quotes
        inputs and file names, and a line of it starting with ``::`` must not run."""
        with self.commands_off():
            print(f"modelseal: {untrusted(text, markup=False, multiline=True)}", file=sys.stderr)
            sys.stderr.flush()
