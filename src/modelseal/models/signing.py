"""OpenSSF model-signing signatures (the ``model-signing`` package) over a model directory:
verifying one with a public key or a keyless Sigstore identity, and making one over the files
``models.lock`` pins.

Signing builds model-signing's own payload (an in-toto Statement, predicate
``https://model_signing/signature/v1.0``: one resource per file with its SHA-256, the subject a
digest over them all) from the lock's verified digests, and signs it with modelseal's signers
(:mod:`modelseal.sign.key`, :mod:`modelseal.sign.keyless`: bounded key reads, retries and
deadlines, tokens never logged). The signature file is a Sigstore bundle that ``model_signing``
(and its CLI, ``model_signing verify``) verifies as its own.

The payload's ``ignore_paths`` are left empty on purpose: model-signing treats each entry as a
path *prefix* (``Path.is_relative_to``), so an ignored file name could later become a directory
of arbitrary files every verifier skips. Every file under the directory is therefore signed: the
pinned ones with the digests the lock pins (checked against the bytes first), the ones
``models.ignore`` matches with their digests now; a file that is neither is refused. Only the
top-level git paths model-signing's verifier always leaves out (``.git``, ``.gitattributes``,
``.github``, ``.gitignore``) are not signed, since no verifier would check them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from modelseal import fsio
from modelseal.bounded import MIB, read_input
from modelseal.errors import ConfigError, GateError

if TYPE_CHECKING:
    from modelseal.models.lock import ModelsLock
    from modelseal.sign.expected import ExpectedSigner
    from modelseal.sign.interface import Signer
    from modelseal.sign.trust import TrustConfig

MAX_MODEL_SIGNATURE_BYTES = 64 * MIB
"""A model signature bundle (its manifest lists every file's digest) larger than this is
refused."""

DEFAULT_SIGNATURE_NAME = "model.sig"
"""``models sign`` writes the signature beside the model directory under this name by
default (``DIR/../model.sig``), outside the signed tree."""

SIGNATURE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
"""What a model signature file is (the provenance byproduct's mediaType)."""

PREDICATE_TYPE = "https://model_signing/signature/v1.0"
"""model-signing's payload predicate (``model_signing._signing.signing._PREDICATE_TYPE``)."""

_GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
"""What model-signing's verifier always leaves out of a model directory (its default hashing
configuration, as path prefixes at the top of the directory): never signed, since no verifier
would check them."""


def verify_model_signature(
    *,
    model_dir: Path,
    signature: Path,
    public_key: Path | None = None,
    identity: str | None = None,
    issuer: str | None = None,
    trust: TrustConfig | None = None,
) -> str | None:
    """``None`` when the signature verifies; otherwise why not (one line).

    A keyless signature is checked against ``trust`` (its trusted root: a private Sigstore's
    Fulcio CA and Rekor key), by default the public instance's root shipped with
    sigstore-python — never fetched, so verification needs no network."""
    if (public_key is None) == (identity is None):
        raise ConfigError("models.signature: set exactly one of public_key and identity.")
    if identity is not None and not issuer:
        raise ConfigError("models.signature: identity needs issuer (the signer's OIDC issuer).")
    for p, what in ((model_dir, "model_dir"), (signature, "path")):
        if not p.exists():
            raise ConfigError(f"models.signature.{what}: {p} does not exist.")
    # The library reads both files whole: check first that they are regular, bounded and
    # inside the repository (a FIFO would hang it, /dev/zero exhaust memory).
    read_input(signature, what="models.signature.path", limit=MAX_MODEL_SIGNATURE_BYTES)
    if public_key is not None and public_key.exists():
        from modelseal.sign.key import MAX_KEY_BYTES

        read_input(public_key, what="models.signature.public_key", limit=MAX_KEY_BYTES)
    from model_signing import verifying  # heavy import (sigstore, grpc-free but large)

    config = verifying.Config()  # type: ignore[no-untyped-call]
    if public_key is not None:
        if not public_key.is_file():
            raise ConfigError(f"models.signature.public_key: {public_key} does not exist.")
        config.use_elliptic_key_verifier(public_key=public_key)
    else:
        assert identity is not None and issuer is not None
        _use_sigstore_verifier(config, identity=identity, issuer=issuer, trust=trust)
    try:
        config.verify(model_dir, signature)
    except Exception as e:  # model-signing raises ValueError and library errors alike
        text = " ".join(str(e).split())
        return f"{type(e).__name__}: {text[:500]}"
    return None


def _use_sigstore_verifier(
    config: Any, *, identity: str, issuer: str, trust: TrustConfig | None
) -> None:
    """model-signing's Sigstore verifier, on a trusted root modelseal loaded.

    ``Config.use_sigstore_verifier`` reads a ClientTrustConfig file itself, or fetches the
    public instance's root from its TUF repository (network) when given none; this builds the
    same verifier (sigstore-python's ``Verifier`` plus an exact identity policy) on the root
    :mod:`modelseal.sign.trust` loaded — bounded, offline, and also from a bare trusted root."""
    from model_signing._signing import sign_sigstore
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity

    from modelseal.sign.trust import production_trust

    root = (trust or production_trust()).trusted_root

    class _Verifier(sign_sigstore.Verifier):
        def __init__(self) -> None:  # the parent's reads a file: replaced, not called
            self._verifier = Verifier(trusted_root=root)
            self._policy = Identity(identity=identity, issuer=issuer)

    # The two attributes use_sigstore_verifier sets (model-signing 1.1).
    setattr(config, "_verifier", _Verifier())  # noqa: B010
    setattr(config, "_uses_sigstore", True)  # noqa: B010


# --- signing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSignature:
    """A signature ``models sign`` (or ``publish.sign_models``) made and verified."""

    path: Path
    """Where the signature (a Sigstore bundle) was written."""
    sha256: str
    """SHA-256 (hex) of the signature file's bytes."""
    model_dir: str
    """The signed directory, relative to the lock's directory (``/``-separated)."""
    files: int
    """How many files the signature covers (the pinned ones and the ``models.ignore``d ones)."""
    model_digest: str
    """The payload subject's SHA-256: over every signed file's digest, in name order."""
    mode: str
    """``key`` or ``keyless``."""
    identity: str | None = None
    issuer: str | None = None

    def to_json(self) -> dict[str, Any]:
        """For ``--format json`` and the run's records."""
        data: dict[str, Any] = {
            "signature": str(self.path),
            "sha256": self.sha256,
            "model_dir": self.model_dir,
            "files": self.files,
            "model_digest": self.model_digest,
            "mode": self.mode,
        }
        if self.identity is not None:
            data["identity"] = self.identity
            data["issuer"] = self.issuer
        return data


def model_dir_in_lock(lock: ModelsLock, model_dir: Path | None) -> str:
    """The directory to sign, relative to the lock's directory: ``model_dir``, or the lock's
    only root when none is given. It must be a real directory below the lock's directory
    holding at least one pinned file."""
    from modelseal.models.lock import path_kind

    base = lock.base
    if model_dir is None:
        if len(lock.roots) != 1:
            raise ConfigError(
                f"{fsio.shown(lock.path or 'models.lock')} has {len(lock.roots)} roots; name "
                "the model directory to sign (modelseal models sign DIR)."
            )
        rel = lock.roots[0]
    else:
        # The parents resolved (a link above the context is the machine's), the last
        # component not: a link there is refused below.
        full = fsio.absolute(model_dir.parent).resolve() / model_dir.name
        try:
            rel = full.relative_to(base).as_posix()
        except ValueError:
            raise ConfigError(
                f"{fsio.shown(model_dir)} is not below {fsio.shown(base)}, the lock's directory."
            ) from None
    if rel in ("", ".") or ".." in PurePosixPath(rel).parts:
        raise ConfigError(
            f"the model directory must be a directory below {fsio.shown(base)}, not the lock's "
            "directory itself."
        )
    kind = path_kind(base, rel)  # a symlink on the way is refused here
    if kind != "dir":
        raise ConfigError(f"model directory {fsio.shown(rel)} is {kind}, not a directory.")
    if not pinned_files(lock, rel):
        raise ConfigError(
            f"{fsio.shown(lock.path or 'models.lock')} pins no file under {fsio.shown(rel)}."
        )
    return rel


def pinned_files(lock: ModelsLock, model_dir: str) -> dict[str, str]:
    """Path relative to ``model_dir`` → pinned SHA-256, for every lock entry under it."""
    prefix = model_dir.rstrip("/") + "/"
    return {e.path[len(prefix) :]: e.sha256 for e in lock.entries if e.path.startswith(prefix)}


def model_signing_statement(
    name: str, files: Mapping[str, str], ignore_paths: Sequence[str]
) -> dict[str, Any]:
    """model-signing's payload for a directory called ``name`` whose files (relative path →
    SHA-256 hex) are ``files``; ``ignore_paths`` (relative to the directory) are recorded so
    that a verifier leaves exactly those out. Built with model-signing's own classes, so the
    Statement is byte for byte what ``model_signing sign`` would sign for these digests."""
    from google.protobuf import json_format  # type: ignore[import-untyped]
    from model_signing import manifest
    from model_signing._hashing.hashing import Digest
    from model_signing._signing.signing import Payload

    serialization = manifest.SerializationType.from_args(
        {
            "method": "files",
            "hash_type": "sha256",
            "allow_symlinks": False,
            "ignore_paths": sorted(ignore_paths),
        }
    )
    items = [
        serialization.new_item(rel, Digest("sha256", bytes.fromhex(digest)))
        for rel, digest in sorted(files.items())
    ]
    payload = Payload(manifest.Manifest(name, items, serialization))
    statement: dict[str, Any] = json.loads(json_format.MessageToJson(payload.statement.pb))
    return statement


def check_signature_path(signature: Path) -> None:
    """The signature is created fresh: a symlink (or anything but a regular file) at its name
    is refused, never written through or replaced."""
    if signature.is_symlink():
        raise fsio.UnsafePathError(
            f"{fsio.shown(signature)} is a symbolic link; the model signature is written as a "
            "new file and never through a link. Remove the link or choose another --signature."
        )
    if signature.exists() and not signature.is_file():
        raise fsio.UnsafePathError(
            f"{fsio.shown(signature)} exists and is not a regular file; the model signature "
            "cannot be written there."
        )


def sign_model_directory(
    lock: ModelsLock,
    model_dir: str,
    *,
    signature: Path,
    signer: Signer,
    trust: TrustConfig | None = None,
    ignore: Sequence[str] = (),
) -> ModelSignature:
    """Sign every file under ``model_dir`` (relative to the lock's directory), write the
    signature to ``signature`` (fresh; a link there is refused) and verify it with
    model-signing under the same signer rules (the key's public half; keyless: the identity
    and issuer of the certificate just issued, against ``trust``'s root).

    The files are checked here, for every caller: each pinned file must have the lock's
    digest, and a file the lock does not pin must match a ``models.ignore`` glob (``ignore``)
    — it is then signed as it is — or nothing is signed (exit 2, the file named). The
    verification that follows hashes the files again, so a file changed in between fails the
    signing rather than shipping a signature that does not match."""
    from modelseal.sign.key import KeySigner

    check_signature_path(signature)
    base = lock.base
    target = fsio.absolute(signature)
    where = target.parent.resolve() / target.name
    if where.is_relative_to(base) and where.relative_to(base).as_posix() in lock.by_path():
        raise ConfigError(
            f"--signature {fsio.shown(signature)} is a model file the lock pins; the signature "
            "would replace it. Write it elsewhere (default: model.sig beside the directory)."
        )
    if where.is_relative_to((base / model_dir).resolve()):
        # model-signing could only leave it out as an ignore_paths prefix (see the module).
        raise ConfigError(
            f"--signature {fsio.shown(signature)} is inside {fsio.shown(model_dir)}, the "
            "directory it signs; write it elsewhere (default: model.sig beside the directory)."
        )
    files = signed_digests(lock, model_dir, ignore)
    name = PurePosixPath(model_dir).name
    statement = model_signing_statement(name, files, ())
    signed = signer.sign_statement(statement)
    bundle = dict(signed.bundle)
    public_pem: bytes | None = None
    if isinstance(signer, KeySigner):
        public_pem = signer.public_key_pem.encode()
        # model-signing names the key by the hex SHA-256 of its PEM form, cosign by the base64
        # SHA-256 of its DER form: the hint is not signed, so the bundle takes model-signing's.
        material = dict(bundle["verificationMaterial"])
        material["publicKey"] = {"hint": hashlib.sha256(public_pem).hexdigest()}
        bundle["verificationMaterial"] = material
    data = json.dumps(bundle, sort_keys=True, separators=(",", ":")).encode()
    with fsio.private_temp_dir("modelseal-msig-") as tmp:
        # Verified as a private copy first, then put in place: a signature that fails leaves
        # the previous one at ``signature`` whole.
        candidate = Path(tmp) / "model.sig"
        candidate.write_bytes(data)
        public_key = None
        if public_pem is not None:
            public_key = Path(tmp) / "key.pub"
            public_key.write_bytes(public_pem)
        problem = verify_model_signature(
            model_dir=base / model_dir,
            signature=candidate,
            public_key=public_key,
            identity=signed.identity if public_pem is None else None,
            issuer=signed.issuer if public_pem is None else None,
            trust=trust,
        )
    if problem is not None:
        raise GateError(
            f"the model signature just made over {model_dir} does not verify ({problem}); "
            f"nothing was written to {fsio.shown(signature)}."
        )
    check_signature_path(signature)
    fsio.write_bytes_atomic(signature, data, mode=0o644)
    return ModelSignature(
        path=target,
        sha256=hashlib.sha256(data).hexdigest(),
        model_dir=model_dir,
        files=len(files),
        model_digest=str(statement["subject"][0]["digest"]["sha256"]),
        mode=signer.mode,
        identity=signed.identity,
        issuer=signed.issuer,
    )


def signed_digests(lock: ModelsLock, model_dir: str, ignore: Sequence[str]) -> dict[str, str]:
    """Path relative to ``model_dir`` → SHA-256 of every file to sign under it, after
    checking the files on disk: pinned ones against the lock, unpinned ones against the
    ``models.ignore`` globs (matched on the path relative to the lock's directory, as the
    models gate does). Top-level git paths are left out (model-signing never checks them)."""
    from modelseal.models.hashing import hash_files
    from modelseal.models.lock import is_ignored, walk_files

    base = lock.base
    prefix = model_dir + "/"
    pinned = pinned_files(lock, model_dir)
    on_disk = [r[len(prefix) :] for r in walk_files(base, [model_dir])]

    def signed(rel: str) -> bool:
        return rel.split("/", 1)[0] not in _GIT_PATHS

    present = set(on_disk)
    problems = [f"{prefix}{r} is pinned but missing" for r in pinned if r not in present]
    problems += [
        f"{prefix}{r} is neither pinned by {fsio.shown(lock.path or 'models.lock')} nor "
        "matched by models.ignore"
        for r in on_disk
        if signed(r) and r not in pinned and not is_ignored(prefix + r, ignore)
    ]
    todo = [r for r in on_disk if signed(r)]
    digests = hash_files([base / prefix / r for r in todo]) if not problems else {}
    out: dict[str, str] = {}
    for rel in todo if not problems else ():
        got = digests[base / prefix / rel]
        want = pinned.get(rel)
        if want is not None and got.sha256 != want:
            problems.append(f"{prefix}{rel} does not have the digest the lock pins")
        out[rel] = got.sha256
    if problems:
        shown = "; ".join(fsio.shown(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ConfigError(f"refusing to sign {fsio.shown(model_dir)}: {shown}{more}.")
    return out


# --- checking a published image's model signature -------------------------------------------


def recorded_model_signatures(provenance: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The model signatures a SLSA provenance records (``publish.sign_models`` byproducts)."""
    run = (provenance or {}).get("predicate", {}).get("runDetails", {})
    found = run.get("byproducts", []) if isinstance(run, Mapping) else []
    return [
        b
        for b in found if isinstance(b, Mapping)
        and isinstance(b.get("annotations"), Mapping)
        and b["annotations"].get("predicateType") == PREDICATE_TYPE
    ]  # fmt: skip


def check_recorded_model_signature(
    signature: Path,
    model_dir: Path | None,
    *,
    expected: ExpectedSigner,
    provenance: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
) -> tuple[bool, str]:
    """``modelseal verify --model-signature``: ``(ok, why)``.

    The registry holds no model files, so this checks a checkout (or a download) of them: the
    signature file must be byte for byte one the image's verified provenance records (its
    sha256), be signed by the expected signer — the image's key, or a certificate whose
    identity and issuer pass the same rules (``identity``/``identity_regexp``, trust config) —
    and the model directory (default: the recorded ``modelDir``, relative to the current
    directory) must match it. ``provenance`` is the image's verified SLSA provenance, or all
    of them (an image can carry several): the signature may be recorded by any. What is
    verified is a private copy of exactly the bytes whose sha256 matched, never the file again
    (it could be swapped in between)."""
    from modelseal.sign.interface import VerificationError

    data = read_input(signature, what="--model-signature", limit=MAX_MODEL_SIGNATURE_BYTES)
    digest = hashlib.sha256(data).hexdigest()
    provenances = (
        [provenance] if provenance is None or isinstance(provenance, Mapping) else provenance
    )
    recorded = [b for p in provenances for b in recorded_model_signatures(p)]
    match = [b for b in recorded if b.get("digest", {}).get("sha256") == digest]
    if not match:
        listed = ", ".join(str(b.get("digest", {}).get("sha256", "?"))[:16] for b in recorded)
        return False, (
            f"{fsio.shown(signature)} (sha256 {digest[:16]}…) is not a model signature the "
            f"provenance records ({listed or 'it records none'})"
        )
    notes = match[0]["annotations"]
    directory = model_dir if model_dir is not None else Path(str(notes.get("modelDir", "")))
    if not directory.is_dir():
        return False, f"model directory {fsio.shown(directory)} is not there to check"
    with fsio.private_temp_dir("modelseal-msig-") as tmp:
        copy = Path(tmp) / "model.sig"  # the bytes that matched, not the file read again
        copy.write_bytes(data)
        if expected.mode == "key":
            key = Path(tmp) / "key.pub"
            key.write_bytes(_pem(expected))
            problem = verify_model_signature(model_dir=directory, signature=copy, public_key=key)
            who = f"key {expected.key_hint}"
        else:
            try:
                identity, issuer = _certificate_signer(data, expected)
            except VerificationError as e:
                return False, f"model signature: {e.message}"
            problem = verify_model_signature(
                model_dir=directory, signature=copy, identity=identity, issuer=issuer,
                trust=expected.trust(),
            )  # fmt: skip
            who = f"{identity} ({issuer})"
    if problem is not None:
        return False, f"model signature does not verify over {fsio.shown(directory)}: {problem}"
    return True, (
        f"{notes.get('files', '?')} model file(s) in {fsio.shown(directory)} match the "
        f"signature the provenance records, signed by {who}"
    )


def _pem(expected: ExpectedSigner) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return expected.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _certificate_signer(data: bytes, expected: ExpectedSigner) -> tuple[str, str]:
    """The identity and issuer of a keyless model signature's certificate, after checking
    them against ``expected`` (the image's signer rules)."""
    from sigstore.models import Bundle

    from modelseal.sign.expected import certificate_identity, certificate_issuer
    from modelseal.sign.interface import VerificationError

    try:
        cert = Bundle.from_json(data).signing_certificate
    except Exception as e:  # sigstore raises its own errors and ValueError alike
        raise VerificationError(f"not a keyless Sigstore bundle ({type(e).__name__})") from None
    expected.check_certificate(cert)
    identity, issuer = certificate_identity(cert), certificate_issuer(cert)
    if identity is None or issuer is None:
        raise VerificationError("the certificate names no identity or issuer")
    return identity, issuer
