"""The GitHub Action adapter: ``python -m modelseal action``.

It reads the inputs (:mod:`.inputs`), calls the application (:func:`modelseal.app.run`, then
:func:`modelseal.app.verify` for the post-publish self-check) in-process, and turns the typed
outcome into what GitHub shows:

* ``$GITHUB_OUTPUT`` (:mod:`.outputs`): digest, image reference, verdict, exit code, the
  policy's ref and digest, and the paths of the report, SBOM, SARIF, provenance and Sigstore
  bundles — every output always set, empty when it does not apply;
* ``$GITHUB_STEP_SUMMARY`` (:mod:`.summary`): the verdict as ``summary.md`` shows it, and what
  was published; every piece of report text escaped;
* ``::error``/``::warning`` workflow commands (:mod:`.annotations`, :mod:`.commands`) that point
  at the policy or Dockerfile line — and a warning when a pull request edits the policy that
  its base branch's copy judged (``policy-ref``, by default the base branch on pull_request
  events).

The exit code is the command line's: 0 passed, 1 policy breached, 2 bad input or policy file,
3 a gate errored, 4 a bug. Nothing here reads or prints a secret: the signing key's password
reaches the signer as ``MODELSEAL_KEY_PASSWORD`` without passing through this package.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from modelseal import app, fsio
from modelseal.errors import ConfigError, Error, ExitCode
from modelseal.github.annotations import (
    MAX_ANNOTATIONS,
    POLICY_TITLE,
    Places,
    annotations_for_verdict,
    capped,
    policy_changed,
    policy_positions,
    relative,
    text_annotations,
)
from modelseal.github.commands import Annotation, Workflow
from modelseal.github.inputs import (
    ActionInputError,
    ActionInputs,
    parse_inputs,
    run_request,
    use_action_cache_dir,
    verify_request,
)
from modelseal.github.outputs import OUTPUT_NAMES, Judged, collect_outputs
from modelseal.github.summary import render_summary
from modelseal.ui import (
    ConsoleHooks,
    print_error,
    print_published,
    print_verification,
    stderr_console,
)

if TYPE_CHECKING:
    from modelseal.judge import Verdict
    from modelseal.policy import LoadedPolicy
    from modelseal.publish.publisher import PublishResult

__all__ = ["main", "run_action"]

#: What a run writes that describes that run: an earlier run's must not pass for this one.
_STALE = ("report.json", "publish.json", "provenance.intoto.json", "sbom.cdx.json", "bundles")


class _Hooks(ConsoleHooks):
    """The command line's view of a run, keeping the verdict (publishing may fail after)."""

    def __init__(self, policy: LoadedPolicy) -> None:
        super().__init__(stderr_console())
        self.policy = policy
        self.judged_run: Judged | None = None

    def judged(self, verdict: Verdict, paths: Mapping[str, Path]) -> None:
        self.judged_run = Judged(verdict, self.policy, dict(paths))
        super().judged(verdict, paths)


def _print_error(e: BaseException, debug: bool) -> tuple[int, str]:
    """An error of the application, printed as the command line prints it; its exit code and
    message."""
    console = stderr_console()
    if isinstance(e, Error):
        print_error(console, e.diagnostics())
        return int(e.exit_code), e.diagnostics()
    if isinstance(e, KeyboardInterrupt):
        console.print("modelseal: interrupted", highlight=False)
        return 130, "interrupted"
    if debug:
        traceback.print_exc()
    print_error(console, f"{type(e).__name__}: {e}", bug=True)
    console.print(
        "Rerun with debug logging (RUNNER_DEBUG) for the traceback, and please report it.",
        highlight=False,
    )
    return int(ExitCode.BUG), f"internal error (a bug): {type(e).__name__}: {e}"


def run_action(env: Mapping[str, str], stdout: TextIO | None = None) -> int:
    """Run the action: validate inputs, run (and publish), verify, report. Returns the exit
    code."""
    gh = Workflow.from_env(env, stdout or sys.stdout)
    try:
        inputs = parse_inputs(env)
    except ActionInputError as e:
        gh.annotate(
            [
                Annotation("error", f"input {name}: {message}", title="modelseal: invalid input")
                for name, message in e.problems
            ][:MAX_ANNOTATIONS]
        )
        gh.log_error(e.diagnostics())
        return _finish(gh, None, None, None, int(ExitCode.USAGE), [str(e)])
    use_action_cache_dir(env, os.environ)
    debug = env.get("RUNNER_DEBUG") == "1"
    if debug:
        logging.getLogger().setLevel(logging.DEBUG)

    policy_file = app.policy_file(Path(inputs.policy) if inputs.policy is not None else None)
    if inputs.policy_ref is not None and policy_file is None:
        policy_file = app.DEFAULT_POLICY  # absent here; the ref's copy (if any) is the one used
    places = Places(
        workspace=gh.workspace,
        context=Path(inputs.context),
        policy=relative(policy_file, gh.workspace) if policy_file else None,
        positions=policy_positions(policy_file) if policy_file else {},
    )
    out_dir = Path(inputs.out_dir)
    for stale in _STALE:
        # Removed without following a link; an out-dir with a link on the way is refused here.
        try:
            fsio.remove(out_dir / stale)
        except ConfigError as e:
            gh.log_error(e.diagnostics())
            gh.annotate([Annotation("error", e.message, title="modelseal: unsafe out-dir")])
            return _finish(gh, inputs, None, None, int(ExitCode.USAGE), [e.message])

    from modelseal.policy.loader import PolicyFileError

    policy: LoadedPolicy | None = None
    hooks: _Hooks | None = None
    outcome: app.RunOutcome | None = None
    failure = ""
    policy_problems: tuple[str, ...] = ()
    with gh.commands_off():
        try:
            policy = app.load_policy(
                Path(inputs.policy) if inputs.policy is not None else None, inputs.policy_ref
            )
            hooks = _Hooks(policy)
            outcome = app.run(run_request(inputs, policy), hooks)
            if outcome.published is not None:
                print_published(outcome.published, outcome.out_dir)
            code = int(outcome.exit_code)
        except PolicyFileError as e:
            code, failure = _print_error(e, debug)
            if inputs.policy_ref is None:
                policy_problems = e.problems
        except (Exception, KeyboardInterrupt) as e:
            code, failure = _print_error(e, debug)
    if policy_problems:
        # Each problem names file:line:col, and becomes an annotation on that line (outside
        # the stop-commands window, or the runner would not act on it).
        found = [a for p in policy_problems for a in text_annotations(p, POLICY_TITLE, places)]
        gh.annotate(capped(found, "error", "policy problems"))
        return _finish(gh, inputs, None, None, code, list(policy_problems))
    judged = hooks.judged_run if hooks is not None else None
    published = outcome.published if outcome is not None else None
    problems: list[str] = []
    annotations: list[Annotation] = []
    if judged is not None:
        changed = policy_changed(judged.policy, policy_file, places)
        if changed is not None:
            # The lines of the edited copy are not the lines of the policy that judged.
            places = dataclasses.replace(places, policy=None, positions={})
        annotations += annotations_for_verdict(judged.verdict, places)
        if changed is not None:
            annotations.insert(0, changed)
    if code != 0 and not any(a.level == "error" for a in annotations):
        # The run could not start, or it passed and then publishing failed: the error is
        # what explains it.
        message = failure or f"modelseal run exited with {code}; the log above says why"
        problems.append(message)
        title = "the run could not start" if judged is None else "publishing failed"
        annotations += text_annotations(message, f"modelseal: {title}", places)

    if code == 0 and inputs.self_check:
        assert policy is not None  # the run passed
        code = _self_check(gh, inputs, policy, published, problems, debug)
        if problems:
            annotations.append(
                Annotation("error", problems[-1], title="modelseal: self-check failed")
            )
    gh.annotate(annotations)
    return _finish(gh, inputs, judged, published, code, problems)


def _self_check(
    gh: Workflow,
    inputs: ActionInputs,
    policy: LoadedPolicy,
    published: PublishResult | None,
    problems: list[str],
    debug: bool,
) -> int:
    """Verify the pushed image's signature; 0 when it verifies (else ``problems`` says why)."""
    if published is None:
        problems.append("nothing was published, so there is no signature to verify")
        return int(ExitCode.ERRORED)
    with gh.commands_off():
        try:
            verified = app.verify(verify_request(inputs, policy, published.reference))
        except (Exception, KeyboardInterrupt) as e:
            code, why = _print_error(e, debug)
        else:
            print_verification(verified.result)
            code, why = int(verified.exit_code), "; ".join(verified.failures())
    if code != 0:
        problems.append(f"the pushed image did not verify: {why}")
    return code


def _finish(
    gh: Workflow,
    inputs: ActionInputs | None,
    judged: Judged | None,
    published: PublishResult | None,
    code: int,
    problems: Sequence[str],
) -> int:
    if inputs is not None:
        outputs = collect_outputs(fsio.absolute(inputs.out_dir), judged, published, code)
    else:
        outputs = dict.fromkeys(OUTPUT_NAMES, "")
        outputs.update({"verdict": "ERRORED", "exit-code": str(code)})
    verdict = judged.verdict if judged is not None else None
    policy = judged.policy if judged is not None else None
    try:
        gh.write_outputs(outputs)
        gh.write_summary(render_summary(verdict, policy, outputs, errors=problems))
    except ConfigError as e:  # e.g. a link where the runner's file should be: not followed
        gh.log_error(e.diagnostics())
        return code or int(ExitCode.USAGE)
    return code


def main(env: Mapping[str, str] | None = None) -> int:
    """``modelseal action``: :func:`run_action` on this process's environment."""
    return run_action(os.environ if env is None else env)
