"""``modelseal rebuild``: rebuild a sealed image from its signed provenance and the source, and
say whether the digest is the same.

:mod:`~modelseal.rebuild.plan` (the provenance verified against the expected signer, then
validated into a plan), :mod:`~modelseal.rebuild.source` (a clean clone at the recorded commit,
and the model weights that are not in git, by their recorded SHA-256),
:mod:`~modelseal.rebuild.runner` (the build on a fresh engine or the named builder, the
comparison with the published image), :mod:`~modelseal.rebuild.report` (``rebuild.json``
and the attestation's predicate), :mod:`~modelseal.rebuild.attest` (signing and attaching the
rebuild attestation). :func:`modelseal.app.rebuild` runs them in that order.
"""
