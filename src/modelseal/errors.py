"""The one error root. Only the CLI boundary turns these into exit codes and messages.

Every error carries a one-paragraph, user-facing summary (``str(error)``) and optional multi-line
advice (``diagnostics()``). Nothing secret may be put into an error's text.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes (DESIGN.md)."""

    PASSED = 0
    BREACHED = 1
    USAGE = 2
    ERRORED = 3
    BUG = 4


class Error(Exception):
    """Root of every error modelseal raises on purpose."""

    exit_code: ExitCode = ExitCode.BUG

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The message plus advice, as printed to the user."""
        if self.hint:
            return f"{self.message}\n{self.hint}"
        return self.message


class ConfigError(Error):
    """Invalid user input: policy file, CLI options, Dockerfile, image references (exit 2)."""

    exit_code = ExitCode.USAGE


class GateError(Error):
    """A gate could not collect its evidence (exit 3 when it reaches the CLI)."""

    exit_code = ExitCode.ERRORED


class PublishError(Error):
    """Signing, a registry, or a publish (or the verification of what was published) could not
    complete (exit 3). Not a gate's evidence: the verdict is already decided when these run.

    Below it: :class:`~modelseal.sign.interface.SigningError`,
    :class:`~modelseal.sign.interface.VerificationError`,
    :class:`~modelseal.publish.registry_limits.RegistryError` (and its unavailable / limit
    kinds) and :class:`~modelseal.publish.cosign.CosignFormatError`.
    """

    exit_code = ExitCode.ERRORED


class ToolError(GateError):
    """An external tool was missing, crashed, timed out, or printed something unparsable."""

    def __init__(
        self, message: str, *, command: str = "", stderr_tail: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.command = command
        self.stderr_tail = stderr_tail

    def diagnostics(self) -> str:
        parts = [self.message]
        if self.stderr_tail:
            parts.append("Last lines it printed:\n" + _indent(self.stderr_tail))
        if self.hint:
            parts.append(self.hint)
        return "\n".join(parts)


class EngineError(GateError):
    """No usable container engine (Docker with BuildKit able to export OCI)."""


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())
