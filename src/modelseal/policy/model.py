"""The policy file's data model: one frozen, strict pydantic model per section.

Every field carries a ``description`` (it becomes the policy reference documentation) and a
fail-closed default: a policy file that only says ``version: 1`` turns every check on.

Adding a section (``models``, ``sbom``, ``vulnerabilities``, ``sign``, ``publish``, ...) means
writing one ``<Name>Policy`` model below and adding one field to :class:`Policy`; the loader,
the JSON Schema and the Markdown reference pick it up from the model.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

POLICY_VERSION: Final = 1
"""The only policy file version this modelseal reads."""

PLATFORM_PATTERN: Final = r"^[a-z0-9_]+/[a-z0-9_]+(/[a-z0-9_]+)?$"
"""An OCI platform, ``os/arch`` or ``os/arch/variant`` (``linux/amd64``, ``linux/arm/v7``)."""

PATTERN_MESSAGES: Final[dict[str, str]] = {
    PLATFORM_PATTERN: (
        'expected a platform "os/arch" or "os/arch/variant" in lower case, '
        'e.g. "linux/amd64" or "linux/arm/v7"'
    ),
}
"""Plain-English error messages for the regular expressions used in the models, by pattern."""

Platform = Annotated[str, StringConstraints(pattern=PLATFORM_PATTERN)]


class BuildPolicy(BaseModel):
    """The build gate: builds the image with BuildKit, reproducibly and with pinned inputs."""

    # Written out in every model (not shared through a variable) so that the pydantic mypy
    # plugin sees frozen=True.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    enabled: bool = Field(
        default=True,
        description="Run the build gate. When false the gate is reported as SKIPPED.",
    )
    rebuild_check: bool = Field(
        default=True,
        description=(
            "Build the image a second time from a cold cache; the two image manifest digests "
            "must be identical, otherwise the build is not reproducible and the gate fails."
        ),
    )
    require_pinned_base: bool = Field(
        default=True,
        description=(
            "Every FROM must be pinned by an @sha256 digest or come from a local OCI-layout "
            "build context; a base image referenced by tag only fails the gate."
        ),
    )
    allow_network: bool = Field(
        default=False,
        description=(
            "Let RUN steps reach the network. When false every RUN step is built with "
            "--network none."
        ),
    )
    platforms: list[Platform] = Field(
        default=[],
        description=(
            'Platforms to build, each "os/arch" or "os/arch/variant" (e.g. "linux/amd64", '
            '"linux/arm64", "linux/arm/v7"). Empty means the container engine\'s native platform.'
        ),
    )


class Policy(BaseModel):
    """A modelseal policy file (modelseal.yml): the thresholds of every gate."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: Literal[1] = Field(
        description=(
            'Policy file format version. Required; must be 1. Write "version: 1" at the top '
            "of the file."
        ),
    )
    build: BuildPolicy = Field(
        default=BuildPolicy(),
        description="Settings of the build gate.",
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_an_integer(cls, value: object) -> object:
        # ``True == 1 == 1.0`` in Python, and even a strict ``Literal[1]`` accepts
        # ``version: true`` and ``version: 1.0``.
        if isinstance(value, bool) or not isinstance(value, int):
            raise PydanticCustomError("literal_error", "Input should be 1", {"expected": "1"})
        return value
