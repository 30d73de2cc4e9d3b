"""Collector: secrets in any layer of the image, by Trivy's secret scanner, offline.

Trivy reads each layer on its own, so a key that one layer adds and a later one deletes is
still found: it is still in the image's blobs for anyone who pulls it. The scan needs no
vulnerability DB and downloads nothing (the flags of the Trivy gate, with ``--scanners secret``
and the same cache directory rules, :func:`modelseal.vuln.trivy.prepare_cache_dir`).

Trivy's built-in allow rules are switched off (a generated ``trivy-secret.yaml`` whose
``disable-allow-rules`` lists them all, written fresh in the run's private directory): they
skip whole trees — ``site-packages`` under ``usr/local/lib/python*`` (where a pip-installed app
lives), ``usr/lib``, ``usr/share``, ``tests``, anything named ``example``, ``vendor/``,
``*.md`` … — and a key there is still in the image. The cost is more findings from test keys
that packages ship, which ``image.secrets_ignore`` accepts by path. (Trivy still never reads
files under ``node_modules/`` and ``.git/``: it skips them before any rule.) No ``TRIVY_*``
variable of the caller reaches Trivy (``TRIVY_SKIP_FILES``, ``TRIVY_SEVERITY``,
``TRIVY_SECRET_CONFIG`` … would narrow the scan and the gate would pass), and its working
directory is private (Trivy reads ``trivy.yaml`` and ``.trivyignore`` from there).

Trivy's report quotes the match (partly masked) and the lines around it. None of that is kept:
a finding names the rule, the file, the line number and the layer (its index, diff id and the
instruction or Dockerfile line that made it), never the secret; the report text is dropped as
soon as it is parsed, and never logged or cached.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelseal import fsio
from modelseal._tools import find_tool, run_tool
from modelseal.bounded import MIB, read_input
from modelseal.errors import Error, GateError, ToolError
from modelseal.findings import Finding, Severity
from modelseal.imagefs import printable
from modelseal.imagegate.history import Attribution, attribution
from modelseal.imagegate.view import ImageView
from modelseal.vuln.trivy import (
    _HINT_BINARY,
    SCAN_TIMEOUT,
    TRIVY_ENV_PREFIX,
    prepare_cache_dir,
    resolve_cache_dir,
    scan_argv,
    single_manifest_layout,
)

GATE = "image"
#: Secret findings kept per image; past it, one ``image.findings-truncated`` (fails).
MAX_SECRETS = 1000
#: Characters of a rule id, title or path kept.
MAX_TEXT = 300
#: Bytes of Trivy's report read back (it quotes a few lines around each match); past it the
#: gate is ERRORED.
MAX_REPORT_BYTES = 64 * MIB
#: The ids of Trivy's built-in allow rules (``pkg/fanal/secret/builtin-allow-rules.go``; Trivy
#: takes a list of ids, not a switch): each skips a whole tree or file type, and ``examples``
#: also every match containing "example". A rule a later Trivy adds is not in this list; the
#: tests plant a key under each tree these rules name, so a Trivy upgrade that adds one shows.
BUILTIN_ALLOW_RULES = (
    "tests", "examples", "vendor", "usr-dirs", "locale-dir", "markdown", "node.js", "golang",
    "python", "rubygems", "wordpress", "anaconda-log",
)  # fmt: skip
#: Trivy's secret configuration: the built-in rules, none of the built-in allow rules.
SECRET_CONFIG = "disable-allow-rules:\n" + "".join(f"  - {r}\n" for r in BUILTIN_ALLOW_RULES)


def write_secret_config(directory: Path) -> Path:
    """:data:`SECRET_CONFIG` as ``trivy-secret.yaml`` in ``directory`` (created fresh)."""
    path = directory / "trivy-secret.yaml"
    fsio.write_text_atomic(path, SECRET_CONFIG)
    return path


def secret_argv(
    trivy: str, layout_dir: Path, cache_dir: Path, config: Path, output: Path | None = None
) -> list[str]:
    """The Trivy gate's offline scan command, for the secret scanner only, with the secret
    configuration ``config`` (:func:`write_secret_config`) and the report written to
    ``output`` (stdout if None)."""
    argv = scan_argv(trivy, layout_dir, cache_dir)
    argv[argv.index("--scanners") + 1] = "secret"
    argv += ["--secret-config", str(config)]
    if output is not None:
        argv += ["--output", str(output)]
    # Findings never change the exit code: a failed run's error may quote its output, and this
    # output holds the secrets.
    return [*argv, "--exit-code", "0"]


def collect(view: ImageView) -> list[Finding]:
    """Trivy's secret findings for one platform image (see the module doc)."""
    ctx = view.ctx
    trivy = find_tool("trivy", env_var="MODELSEAL_TRIVY", hint=_HINT_BINARY)
    cache_dir = resolve_cache_dir(ctx.policy.policy.trivy.db, ctx.options.context)
    prepare_cache_dir(cache_dir)
    work = Path(tempfile.mkdtemp(prefix="secrets-", dir=fsio.ensure_dir(ctx.work_dir)))
    single, aliases = _input(view, work / "input")
    slimmed = f", {len(aliases)} model layer(s) without their weights" if aliases else ""
    ctx.progress(GATE, f"scanning the layers for secrets ({view.platform}{slimmed})")
    # cwd: the private directory, so that no trivy.yaml / .trivyignore of the build context
    # (Trivy reads them from the working directory) changes the rules; the environment: no
    # TRIVY_* (see the module doc).
    report = work / "secrets.json"
    argv = secret_argv(trivy, Path(single.name), cache_dir, write_secret_config(work), report)
    try:
        proc = run_tool(argv, timeout=SCAN_TIMEOUT, cwd=work, check=False,
                        drop_prefixes=(TRIVY_ENV_PREFIX,))  # fmt: skip
        if proc.returncode != 0:
            # Not run_tool's error: with nothing on stderr it would quote stdout.
            raise ToolError(f"trivy exited with code {proc.returncode} scanning for secrets.",
                            command=" ".join(argv[:4]) + " …", stderr_tail=proc.stderr[-2000:])  # fmt: skip
        try:
            data = read_input(report, what="Trivy's secret report", limit=MAX_REPORT_BYTES,
                              contained=False)  # fmt: skip
        except Error as e:
            raise ToolError(e.message) from None
        text = data.decode("utf-8", errors="replace")
        del data
        return parse_secrets(text, view, attribution(view), config_target=single.name,
                             aliases=aliases)  # fmt: skip
    finally:
        # The report holds the matched secrets: gone as soon as it is parsed (or the run
        # failed).
        fsio.remove(report)


def _input(view: ImageView, dest: Path) -> tuple[Path, dict[str, str]]:
    """The one-image layout Trivy scans, and the diff_ids it reports for slim layers mapped to
    the layers' own. A layer that holds only model files is given as its slim layer when the
    build made one in this run (:class:`~modelseal.imagebuild.finalize.SlimLayer`: the weights
    that Trivy would skip as binary left out, so they are not decompressed again); otherwise,
    or when the slim layers cannot be linked there, the image as it is."""
    from modelseal.postbuild import slim_layers
    from modelseal.scanview import scan_layout

    layers = view.manifest.get("layers") or []
    slims = slim_layers(view.ctx)
    replace = {str(d.get("digest")): slims[str(d.get("digest"))] for d in layers
               if isinstance(d, dict) and str(d.get("digest")) in slims}  # fmt: skip
    if replace:
        made = scan_layout(view.layout, view.digest, dest, platform=view.platform, replace=replace)
        if made is not None:
            return made, {slim.digest: slim.layer_diff_id for slim in replace.values()}
    return single_manifest_layout(view.layout, view.digest, dest), {}


def _text(value: object) -> str:
    return printable(str(value)[:MAX_TEXT])


def parse_secrets(
    text: str, view: ImageView, at: Attribution, *, config_target: str,
    aliases: Mapping[str, str] | None = None,
) -> list[Finding]:  # fmt: skip
    """Findings from Trivy's JSON report, without the matched text (see the module doc).
    Trivy also scans the image config (environment, labels, the history's commands), reported
    with the image's name (``config_target``, the layout directory) and no layer. ``aliases``:
    a slim layer's diff_id → the diff_id of the layer it stands for."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        # Never the output itself: it may hold a secret.
        raise ToolError(f"trivy printed something that is not JSON ({e.msg}).") from None
    if not isinstance(data, dict) or "SchemaVersion" not in data:
        raise ToolError("trivy's output is not a Trivy JSON report (no SchemaVersion).")
    results = data.get("Results") or []
    if not isinstance(results, list):
        raise ToolError("trivy's report has a Results value that is not a list.")
    rootfs = view.config.get("rootfs")
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    layer_of = {str(d): k for k, d in enumerate(diff_ids)} if isinstance(diff_ids, list) else {}
    out: list[Finding] = []
    dropped = 0
    try:
        for result in results:
            if not isinstance(result, dict) or result.get("Class") != "secret":
                continue
            target = str(result.get("Target") or "")
            for s in result.get("Secrets") or []:
                if len(out) >= MAX_SECRETS:
                    dropped += 1
                    continue
                if target == config_target and not _diff_id(s):
                    out.append(_config_finding(view, s))
                else:
                    out.append(_finding(view, at, target, s, layer_of, aliases or {}))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise GateError(
            f"trivy's secret report has an unexpected shape ({type(e).__name__})."
        ) from None
    if dropped:
        out.append(Finding(GATE, "image.findings-truncated", Severity.HIGH,
                           f"{dropped} more image.secret findings were not listed (at most "
                           f"{MAX_SECRETS})", "image.secret",
                           evidence={"platform": view.platform, "kind": "image.secret",
                                     "dropped": str(dropped)}))  # fmt: skip
    return out


def _diff_id(s: Mapping[str, Any]) -> str:
    layer = s.get("Layer")
    return str(layer.get("DiffID") or "") if isinstance(layer, dict) else ""


def _severity(s: Mapping[str, Any]) -> Severity:
    try:
        return Severity.parse(str(s.get("Severity") or "UNKNOWN"))
    except ValueError:
        return Severity.UNKNOWN


def _config_finding(view: ImageView, s: Mapping[str, Any]) -> Finding:
    rule = _text(s.get("RuleID") or "unknown")
    line = s.get("StartLine")
    evidence = {"platform": view.platform, "rule": rule, "category": _text(s.get("Category") or "")}
    if isinstance(line, int) and not isinstance(line, bool):
        evidence["config_line"] = str(line)  # of the config blob as JSON
    return Finding(
        GATE, "image.secret-config", _severity(s),
        f"{_text(s.get('Title') or rule)} ({rule}) in the image config (its environment, "
        "labels or the commands of its history), readable by anyone who can pull the image",
        "image config", location="image config", evidence=evidence,
    )  # fmt: skip


def _finding(view: ImageView, at: Attribution, target: str, s: Mapping[str, Any],
             layer_of: Mapping[str, int], aliases: Mapping[str, str]) -> Finding:  # fmt: skip
    path = "/" + target.lstrip("/")
    rule = _text(s.get("RuleID") or "unknown")
    title = _text(s.get("Title") or rule)
    line = s.get("StartLine")
    diff_id = _diff_id(s)
    diff_id = aliases.get(diff_id, diff_id)
    index = layer_of.get(diff_id, -1)
    severity = _severity(s)
    evidence = {"platform": view.platform, "rule": rule, "category": _text(s.get("Category") or "")}
    if isinstance(line, int) and not isinstance(line, bool):
        evidence["line"] = str(line)
    if diff_id:
        evidence["diff_id"] = _text(diff_id)
    location = f"layer {index + 1}" if index >= 0 else None
    if index >= 0:
        origin = at.origin(index)
        evidence |= origin.evidence()
        location = origin.location
    still = view.fs.resolve(path.lstrip("/"), follow_final=False).entry is not None
    if not still:
        evidence["deleted"] = "yes: a later layer deletes it, but the layer still holds it"
    where = f"layer {index + 1}" if index >= 0 else "a layer"
    return Finding(
        GATE, "image.secret", severity,
        f"{title} ({rule}) in {printable(path)}{f', line {line}' if 'line' in evidence else ''}, "
        f"added by {where}{'' if still else ' (deleted later, still in the layer)'}",
        printable(path), location=location, evidence=evidence,
    )  # fmt: skip
