"""Signing, registry and publish errors are their own branch of the one error root."""

from __future__ import annotations

import pytest

from modelseal.errors import Error, ExitCode, GateError, PublishError
from modelseal.publish.cosign import CosignFormatError
from modelseal.publish.registry_limits import RegistryError, RegistryLimitError, RegistryUnavailable
from modelseal.sign.interface import SigningError, VerificationError
from modelseal.sign.key import SigningKeyError


@pytest.mark.parametrize(
    "cls",
    [
        SigningError,
        VerificationError,
        RegistryError,
        RegistryUnavailable,
        CosignFormatError,
    ],
)
def test_publish_errors_are_not_gate_errors_and_exit_3(cls: type[PublishError]) -> None:
    assert issubclass(cls, PublishError) and issubclass(cls, Error)
    assert not issubclass(cls, GateError)  # not "a gate could not collect its evidence"
    assert cls("x").exit_code is ExitCode.ERRORED


def test_the_limit_error_and_the_key_error_keep_their_exit_codes() -> None:
    limit = RegistryLimitError("too large", limit="manifest size")
    assert isinstance(limit, RegistryError) and limit.exit_code is ExitCode.ERRORED
    # an unusable key file is bad input: still exit 2, below the signing branch
    assert issubclass(SigningKeyError, SigningError)
    assert SigningKeyError("x").exit_code is ExitCode.USAGE
