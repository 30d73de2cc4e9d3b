"""Evaluating a Kyverno ImageValidatingPolicy's CEL with the real ``celpy`` (cel-python)
interpreter, the way Kyverno does for a Pod.

What Kyverno provides to the expressions (pkg/imageverification of kyverno/kyverno), and how it
is reproduced here:

* ``images``: the pod's images by kind (``containers``, ``initContainers``,
  ``ephemeralContainers``); ``attestors`` and ``attestations``: each entry's name by its name;
  ``variables``: the policy's variables, evaluated in order;
* ``verifyImageSignatures(image, [attestors…])``: how many of the attestors verified the image
  signature — here, each listed attestor counts when the test says the image carries a valid
  signature by the policy's signer (``signed``);
* ``verifyAttestationSignatures(image, attestation, [attestors…])``: how many attestors verified
  an attestation of the attestation's in-toto ``type`` — here, an attestor counts when a
  statement of that type among those the test gives for the image was signed by a signer that
  attestor accepts (each statement names its signer, tests/support/kyverno_jmespath.py
  ``SIGNED_BY``: a key must be the attestor's ``key.data``, a certificate must match one of its
  keyless ``identities``); it records the statement as verified (Kyverno keeps one per type:
  the last one cosign returns that the attestors verified);
* ``extractPayload(image, attestation)``: the verified in-toto **statement** (cosign's
  ``AttestationToPayloadJSON``: the whole statement, its fields under ``predicate``), an error
  if that attestation was not verified first;
* Kyverno's CEL time library (``time_now_utc``, ``time_add``, ``time_after``, ``time_before``,
  pkg/cel/libs/time): RFC 3339 strings and Go durations, as its Go code does;
* a validation is satisfied only when it evaluates to ``true``; an error counts as a failure
  (``failurePolicy: Fail``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import celpy
from celpy import celtypes
from tests.support.kyverno_jmespath import (
    SIGNED_BY,
    format_rfc3339,
    parse_go_duration,
    parse_rfc3339,
    signer_of,
)


class Pod:
    """What the evaluation needs to know about one pod: its images, which of them carry a
    valid signature by the policy's signer, and the statements of each image whose signatures
    verified."""

    def __init__(
        self,
        containers: list[str],
        *,
        signed: Iterable[str],
        statements: dict[str, list[dict[str, Any]]],
        init_containers: list[str] | None = None,
        ephemeral_containers: list[str] | None = None,
    ) -> None:
        self.images: dict[str, list[str]] = {"containers": containers}
        if init_containers is not None:
            self.images["initContainers"] = init_containers
        if ephemeral_containers is not None:
            self.images["ephemeralContainers"] = ephemeral_containers
        self.signed = set(signed)
        self.statements = statements


def _functions(
    policy: dict[str, Any], pod: Pod, now: datetime | None
) -> dict[str, Callable[..., Any]]:
    types = {a["name"]: a["intoto"]["type"] for a in policy["spec"].get("attestations", [])}
    signers = {a["name"]: a["cosign"] for a in policy["spec"]["attestors"]}
    verified: dict[tuple[str, str], dict[str, Any]] = {}

    def count(attestors: Any) -> int:
        names = [str(a) for a in attestors]
        for n in names:
            if n not in signers:
                raise ValueError(f"attestor not found in policy: {n}")
        return len(names)

    def accepts(name: str, signer: dict[str, str]) -> bool:
        cosign = signers[name]
        if "key" in cosign:
            pem = cosign["key"]["data"].strip()
            return "key" in signer and signer["key"].strip() == pem
        for identity in cosign["keyless"]["identities"]:
            if signer.get("issuer") != identity["issuer"]:
                continue
            subject = signer.get("subject")
            if subject is None:
                continue
            if "subject" in identity and subject == identity["subject"]:
                return True
            if "subjectRegExp" in identity and re.search(identity["subjectRegExp"], subject):
                return True
        return False

    def verify_image_signatures(image: Any, attestors: Any) -> celtypes.IntType:
        n = count(attestors)
        return celtypes.IntType(n if str(image) in pod.signed else 0)

    def verify_attestation_signatures(image: Any, attestation: Any, attestors: Any) -> Any:
        count(attestors)
        kind = types[str(attestation)]
        of_kind = [s for s in pod.statements.get(str(image), []) if s.get("predicateType") == kind]
        n = 0
        for name in (str(a) for a in attestors):
            found = [s for s in of_kind if accepts(name, signer_of(s))]
            if found:
                n += 1
                verified[(str(image), str(attestation))] = found[-1]
        return celtypes.IntType(n)

    def extract_payload(image: Any, attestation: Any) -> Any:
        statement = verified.get((str(image), str(attestation)))
        if statement is None:
            return celpy.CELEvalError(
                "intoto attestation payload cannot be fetch before verifying intoto attestation"
            )
        return celpy.json_to_cel({k: v for k, v in statement.items() if k != SIGNED_BY})

    def time_now_utc() -> celtypes.StringType:
        return celtypes.StringType(format_rfc3339(now or datetime.now(UTC)))

    def time_add(ts: Any, duration: Any) -> celtypes.StringType:
        return celtypes.StringType(
            format_rfc3339(parse_rfc3339(str(ts)) + parse_go_duration(str(duration)))
        )

    def time_after(t1: Any, t2: Any) -> celtypes.BoolType:
        return celtypes.BoolType(parse_rfc3339(str(t1)) > parse_rfc3339(str(t2)))

    def time_before(t1: Any, t2: Any) -> celtypes.BoolType:
        return celtypes.BoolType(parse_rfc3339(str(t1)) < parse_rfc3339(str(t2)))

    return {
        "verifyImageSignatures": verify_image_signatures,
        "verifyAttestationSignatures": verify_attestation_signatures,
        "extractPayload": extract_payload,
        "time_now_utc": time_now_utc,
        "time_add": time_add,
        "time_after": time_after,
        "time_before": time_before,
    }


def evaluate(policy: dict[str, Any], pod: Pod, now: datetime | None = None) -> list[Any]:
    """The result of each validation of ``policy`` for ``pod`` (a bool, or the error)."""
    spec = policy["spec"]
    env = celpy.Environment()
    funcs = _functions(policy, pod, now)
    activation: dict[str, Any] = {
        "images": celpy.json_to_cel(pod.images),
        "attestors": celpy.json_to_cel({a["name"]: a["name"] for a in spec["attestors"]}),
        "attestations": celpy.json_to_cel(
            {a["name"]: a["name"] for a in spec.get("attestations", [])}
        ),
    }

    def run(expression: str) -> Any:
        program = env.program(env.compile(expression), functions=funcs)
        try:
            return program.evaluate(activation)
        except (celpy.CELEvalError, ValueError, TypeError, KeyError) as e:
            return e

    variables: dict[str, Any] = {}
    for variable in spec.get("variables", []):
        activation["variables"] = celtypes.MapType(
            {celtypes.StringType(k): v for k, v in variables.items()}
        )
        variables[variable["name"]] = run(variable["expression"])
    activation["variables"] = celtypes.MapType(
        {celtypes.StringType(k): v for k, v in variables.items()}
    )
    return [run(v["expression"]) for v in spec["validations"]]


def admits(policy: dict[str, Any], pod: Pod, now: datetime | None = None) -> bool:
    """Whether every validation evaluates to ``true`` (an error refuses: failurePolicy Fail)."""
    return all(isinstance(r, celtypes.BoolType) and bool(r) for r in evaluate(policy, pod, now))
