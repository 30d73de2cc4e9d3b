"""Which Dockerfile instruction made each layer of the image (for the image gate's findings).

The image config's ``history`` lists one entry per instruction of every stage the image was
built from (the base image's first), ``empty_layer`` marking those that made no layer; the
others pair with the manifest's layers in order. BuildKit writes ``created_by`` as the
instruction's keyword and arguments (``COPY f /app/f # buildkit``, ``RUN |1 A=1 /bin/sh -c …``)
but no line number, so the final stage's instructions are paired with the last history
entries from the end, keyword by keyword, and only when the whole stage lines up (the ARG the
build gate adds after each FROM aside). A layer gets the line of its instruction in the
Dockerfile the build gate read (re-read, and used only if it is still that file); the base
image's layers, and every layer of an image whose history does not line up, are attributed by
``created_by`` only: never guessed.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelseal.errors import Error
from modelseal.imagebuild.dockerfile import Instruction, parse_dockerfile
from modelseal.imagebuild.source_date_epoch import SOURCE_DATE_EPOCH_ARG
from modelseal.imagegate.secretlike import redact

if TYPE_CHECKING:
    from modelseal.imagegate.view import ImageView

#: History entries read (a config with more is attributed by created_by only up to here).
MAX_HISTORY = 10_000
#: Characters of ``created_by`` kept in a finding.
MAX_CREATED_BY = 200


@dataclass(frozen=True)
class Origin:
    """What made one layer: ``line`` of ``dockerfile`` (0: not this Dockerfile's, or not known)
    and the instruction as the history records it."""

    layer: int  # index, bottom first
    created_by: str
    dockerfile: str = ""
    line: int = 0

    @property
    def location(self) -> str:
        """``Dockerfile:12`` when known (SARIF points there), else ``layer N``."""
        return f"{self.dockerfile}:{self.line}" if self.line else f"layer {self.layer + 1}"

    def evidence(self) -> dict[str, str]:
        """The finding evidence naming the origin."""
        out = {"layer": str(self.layer + 1), "created_by": self.created_by}
        if self.line:
            out["dockerfile_line"] = f"{self.dockerfile}:{self.line}"
        return out


def _keyword(created_by: str) -> str:
    return created_by.split(" ", 1)[0].upper()


def _short(text: str) -> str:
    # The history is in the image for anyone to read, but a report is published further:
    # secret-looking values (and the build arguments of a RUN) are not copied into it.
    text = redact(text.removesuffix(" # buildkit"))
    return text if len(text) <= MAX_CREATED_BY else text[: MAX_CREATED_BY - 1] + "…"


def _final_stage(instructions: tuple[Instruction, ...]) -> list[Instruction]:
    last_from = max(k for k, i in enumerate(instructions) if i.keyword == "FROM")
    return list(instructions[last_from + 1 :])


def final_stage(
    text: str | None, name: str, build_args: dict[str, str] | None = None
) -> tuple[Instruction, ...] | None:
    """The instructions of the final stage of the Dockerfile ``text`` (None: not known, or
    not parsable)."""
    if text is None:
        return None
    try:
        return tuple(_final_stage(parse_dockerfile(text, name, build_args=build_args or {})
                                  .instructions))  # fmt: skip
    except Error:
        return None


def layer_origins(
    config: dict[str, Any], n_layers: int, stage: Sequence[Instruction] | None,
    dockerfile_name: str,
) -> list[Origin]:  # fmt: skip
    """One :class:`Origin` per layer (``n_layers`` of them). ``stage``: the final stage of the
    Dockerfile the image was built from (:func:`final_stage`; None: not known, attribution by
    ``created_by`` only)."""
    raw = config.get("history")
    history = raw[:MAX_HISTORY] if isinstance(raw, list) else []
    entries = [
        (_short(str(h.get("created_by") or "")), bool(h.get("empty_layer")))
        for h in history
        if isinstance(h, dict)
    ]
    lines: dict[int, int] = {}  # history index → Dockerfile line
    if stage is not None:
        todo = list(stage)
        k = len(entries) - 1
        while todo and k >= 0:
            created_by, _ = entries[k]
            instr = todo[-1]
            if _keyword(created_by) != instr.keyword:
                if created_by == SOURCE_DATE_EPOCH_ARG:
                    k -= 1  # the ARG the build gate adds to each stage
                    continue
                break
            lines[k] = instr.start_line
            todo.pop()
            k -= 1
        if todo:
            lines = {}  # the stage does not line up as a whole: no line is guessed
    made = [k for k, (_, empty) in enumerate(entries) if not empty]
    # Layers and non-empty history entries pair from the start; a config whose history does
    # not match its layers is attributed by position only where it does.
    origins = []
    for layer in range(n_layers):
        if len(made) == n_layers:
            k = made[layer]
            origins.append(Origin(layer, entries[k][0], dockerfile_name, lines.get(k, 0)))
        else:
            origins.append(Origin(layer, ""))
    return origins


@dataclass(frozen=True)
class Attribution:
    """The origins of one image's layers and its final stage's instructions (for the config
    fields: ``USER``, ``EXPOSE``, ``ENV`` …)."""

    origins: tuple[Origin, ...]
    stage: tuple[Instruction, ...]  # empty when the Dockerfile is not known
    dockerfile: str

    def origin(self, layer: int) -> Origin:
        """The origin of layer ``layer`` (index, bottom first)."""
        if 0 <= layer < len(self.origins):
            return self.origins[layer]
        return Origin(layer, "")

    def instruction(self, keyword: str, name: str = "") -> tuple[str, dict[str, str]]:
        """The location and evidence of the last final-stage ``keyword`` instruction (naming
        ``name`` when given: the variable or label ``ENV NAME=…`` / ``LABEL NAME=…`` sets, the
        port ``EXPOSE`` exposes as ``PORT/PROTO``); ``("", {})`` when none is (the value comes
        from the base image, or an argument the line names through a variable)."""
        for instr in reversed(self.stage):
            if instr.keyword != keyword:
                continue
            if name and keyword == "EXPOSE" and not _exposes(instr.args, name):
                continue
            if name and keyword != "EXPOSE" and name not in _names_set(instr.args):
                continue
            where = f"{self.dockerfile}:{instr.start_line}"
            return where, {"dockerfile_line": where}
        return "", {}


def _words(args: str) -> list[str]:
    """Arguments split as the Dockerfile parser splits them (quotes, backslash escapes); on
    unbalanced quotes, at white space."""
    try:
        return shlex.split(args, posix=True)
    except ValueError:
        return args.split()


def _names_set(args: str) -> set[str]:
    """The names ``ENV``/``LABEL`` arguments set, never their values: every ``NAME=value``
    word (``"NAME"=v`` too), or, in the legacy form ``NAME value with spaces``, the first
    word alone."""
    words = _words(args)
    if not words:
        return set()
    if "=" not in words[0]:
        return {words[0]}
    return {w.partition("=")[0] for w in words if "=" in w}


_PORT = re.compile(r"(?P<lo>\d+)(?:-(?P<hi>\d+))?(?:/(?P<proto>[A-Za-z]+))?")


def _exposes(args: str, port: str) -> bool:
    """Whether ``EXPOSE`` arguments expose ``port`` (``NUMBER/proto``): ``8080``, ``53/udp``,
    a range ``8000-8010/tcp``."""
    number, _, proto = port.partition("/")
    if not number.isdigit():
        return False
    for word in _words(args):
        m = _PORT.fullmatch(word)
        if m is None or (m.group("proto") or "tcp").lower() != proto:
            continue
        lo = int(m.group("lo"))
        hi = int(m.group("hi") or lo)
        if lo <= int(number) <= hi:
            return True
    return False


def attribution(view: ImageView) -> Attribution:
    """The layer origins of ``view``'s image, once per run and image; the Dockerfile is the
    build's (re-read, bounded, and used only if its digest is the one the build recorded)."""
    from modelseal.bounded import read_input_text

    build = view.ctx.result("build")
    opts = view.ctx.options
    name = build.facts.get("dockerfile", "Dockerfile")

    def make() -> Attribution:
        text: str | None = None
        try:
            text = read_input_text(opts.dockerfile or opts.context / "Dockerfile",
                                   what="Dockerfile")  # fmt: skip
        except Error:
            text = None
        if text is not None and text_digest(text) != build.facts.get("dockerfile.sha256"):
            text = None  # changed since the build: its lines would lie
        layers = view.manifest.get("layers")
        n = len(layers) if isinstance(layers, list) else 0
        # Parsed once: the layers' lines and the config fields' lines both come from it.
        stage = final_stage(text, name, dict(opts.build_args))
        origins = layer_origins(view.config, n, stage, name)
        return Attribution(tuple(origins), stage or (), name)

    return view.ctx.shared.once(f"image-history:{view.digest}", make)


def text_digest(text: str) -> str:
    """The sha256 the build gate records for the Dockerfile (``dockerfile.sha256``)."""
    return hashlib.sha256(text.encode()).hexdigest()
