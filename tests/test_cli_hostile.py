"""The command line against hostile input: flags that validate but would misbehave later,
file names and finding texts that try to drive the terminal or the CI log."""

from __future__ import annotations

import pytest

from modelseal._cli import main

REF = "127.0.0.1:1/nothing/here:1"  # nothing listens: reaching the registry would be exit 3


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("^a|.*$", "do not anchor the whole pattern"),
        ("^(a+)+$", "repeated group contains another repetition"),
    ],
)
def test_verify_checks_the_identity_regexp_flag_before_any_network(
    pattern: str, why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["verify", REF, "--certificate-oidc-issuer", "https://issuer.example",
            f"--certificate-identity-regexp={pattern}"]  # fmt: skip
    assert main(argv) == 2
    assert why in capsys.readouterr().err


def test_verify_max_scan_age_days_is_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["verify", REF, "--certificate-oidc-issuer", "https://issuer.example",
            "--certificate-identity", "a@b.example", "--max-scan-age-days", "1000000000"]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "expected whole days from 0 to 3650" in capsys.readouterr().err
