"""`modelseal rebuild` end to end: an image published with `run --push` (real BuildKit, the
local registry, a key) is rebuilt on a fresh private engine from its signed provenance and a
git checkout; lies in the provenance show up as named file differences, refusals come before
any build."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.support.gitrepo import git
from tests.support.tools import build_layout

from modelseal._cli import main
from modelseal.imagebuild import engine as engine_module
from modelseal.publish.registry import RegistryClient
from modelseal.publish.statements import REBUILD_PREDICATE, statement_bytes
from modelseal.sign.interface import BUNDLE_MEDIA_TYPE, VerificationError
from modelseal.sign.key import KeySigner, generate_ephemeral_key
from modelseal.sign.verify import ExpectedSigner, verify_bundle

POLICY = """\
version: 1
build:
  rebuild_check: false
publish:
  attestations: [provenance]
"""
DOCKERFILE = """\
FROM base
ARG GREETING=hi
COPY model.bin app.txt /srv/
RUN echo "$GREETING" > /srv/greeting
"""


@dataclass(frozen=True)
class Published:
    """The image `run --push` published from ``repo`` at ``commit1``."""

    image: str
    digest: str
    out: Path
    repo: Path
    """At commit1 (what was built)."""
    moved: Path
    """A clone of ``repo`` at commit2, where model.bin differs."""
    commit1: str
    commit2: str
    keys: tuple[Path, Path]
    base: str
    provenance: dict[str, Any]


@pytest.fixture(scope="module")
def published(
    registry: str, busybox_base: str, tmp_path_factory: pytest.TempPathFactory
) -> Published:
    root = tmp_path_factory.mktemp("rebuild")
    keys = generate_ephemeral_key(root / "keys")
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "Dockerfile").write_text(DOCKERFILE)
    (repo / "app.txt").write_text("app\n")
    (repo / "model.bin").write_bytes(b"weights v1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "one")
    commit1 = git(repo, "rev-parse", "HEAD")
    (repo / "model.bin").write_bytes(b"weights v2\n")
    git(repo, "commit", "-q", "-am", "two")
    commit2 = git(repo, "rev-parse", "HEAD")
    moved = root / "moved"
    git(root, "clone", "-q", str(repo), str(moved))
    git(repo, "checkout", "-q", commit1)
    policy = root / "modelseal.yml"
    policy.write_text(POLICY)
    out = root / "out"
    image = f"{registry}/seal/rebuild"
    code = main([
        "run", str(repo), "--policy", str(policy), "--build-context", f"base={busybox_base}",
        "--build-arg", "GREETING=hello", "-o", str(out), "--gate", "build",
        "--push", f"{image}:1.0", "--sign", "key", "--key", str(keys[0]),
        "--no-evidence-cache",
    ])  # fmt: skip
    assert code == 0
    record = json.loads((out / "publish.json").read_text())
    provenance = json.loads((out / "provenance.intoto.json").read_text())
    return Published(
        image, record["digest"], out, repo, moved, commit1, commit2, keys, busybox_base,
        provenance,
    )  # fmt: skip


@pytest.fixture
def engine_starts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """The roots of the private engines started during the test (they still start)."""
    started: list[Path] = []
    real = engine_module.PrivateEngine.start

    def spy(self: engine_module.PrivateEngine, **kw: Any) -> engine_module.PrivateEngine:
        started.append(self.root)
        return real(self, **kw)

    monkeypatch.setattr(engine_module.PrivateEngine, "start", spy)
    yield started


def _signed_copy(p: Published, tmp: Path, change: Any) -> Path:
    """The real provenance, changed by ``change(statement)``, signed with the builder's key:
    a provenance that lies, by the signer the rebuilder trusts."""
    statement = copy.deepcopy(p.provenance)
    change(statement)
    bundle = tmp / "lie.sigstore.json"
    bundle.write_bytes(KeySigner.from_file(p.keys[0]).sign_statement(statement).bundle_json())
    return bundle


def _rebuild(p: Published, target: str, out: Path, *extra: str, base: str | None = None) -> int:
    contexts = ["--build-context", f"base={base or p.base}"] if base != "" else []
    return main([
        "rebuild", target, "--source", str(p.repo), "--key", str(p.keys[1]), "-o", str(out),
        *contexts, *extra,
    ])  # fmt: skip


def _external(statement: dict[str, Any]) -> dict[str, Any]:
    return statement["predicate"]["buildDefinition"]["externalParameters"]  # type: ignore[no-any-return]


def test_rebuild_of_the_image_reproduces_it_and_attests(
    published: Published, tmp_path: Path, engine_starts: list[Path],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    p = published
    assert _external(p.provenance)["network"] == "none"
    rebuilder_key, rebuilder_pub = generate_ephemeral_key(tmp_path / "rebuilder")
    out = tmp_path / "out"
    code = _rebuild(
        p, f"{p.image}@{p.digest}", out,
        "--attest", "--push", "--sign", "key", "--signing-key", str(rebuilder_key),
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "reproduced" in printed
    assert len(engine_starts) == 1 and not engine_starts[0].exists()  # fresh, then removed
    report = json.loads((out / "rebuild.json").read_text())
    assert report["verdict"] == "reproduced" and report["exit_code"] == 0
    assert report["expected_digest"] == report["rebuilt_digest"] == p.digest
    assert report["source"]["checkout"] == "clean clone"
    assert report["source"]["commit"] == p.commit1
    assert f"built from a clean clone of {p.commit1}" in printed
    assert report["differences"] == [] and report["notes"] == []
    provenance_hex = hashlib.sha256(statement_bytes(p.provenance)).hexdigest()
    assert report["provenance"]["sha256"] == provenance_hex
    # The attestation: a referrer of the image, signed by the rebuilder, predicate as documented.
    client = RegistryClient(p.image.split("/", 1)[0], "seal/rebuild")
    referrer = report["attestation"]["referrer"]
    assert referrer in [d["digest"] for d in client.referrers(p.digest, BUNDLE_MEDIA_TYPE)]
    manifest = json.loads(client.get_manifest(referrer)[1])
    bundle = client.get_blob(manifest["layers"][0]["digest"])
    verified = verify_bundle(
        bundle, payload=None, expected=ExpectedSigner(public_key_pem=rebuilder_pub.read_bytes())
    )
    statement = verified.statement
    assert statement is not None and statement["predicateType"] == REBUILD_PREDICATE
    assert statement["subject"][0]["digest"]["sha256"] == p.digest.removeprefix("sha256:")
    predicate = statement["predicate"]
    # (the signed bytes are canonical JSON: sorted keys, whatever order the predicate was built in)
    assert set(predicate) == {
        "verdict", "rebuiltDigest", "platforms", "provenance", "source", "rebuilder", "rebuiltOn",
    }  # fmt: skip
    assert predicate["verdict"] == "reproduced" and predicate["rebuiltDigest"] == p.digest
    assert predicate["provenance"]["digest"] == {"sha256": provenance_hex}
    assert predicate["source"] == {"commit": p.commit1}
    assert predicate["rebuilder"]["builder"]["driver"] == "docker"
    assert [v["rebuilt"] for v in predicate["platforms"].values()] == [p.digest]
    # The builder's key does not verify the rebuilder's attestation.
    with pytest.raises(VerificationError):
        verify_bundle(
            bundle, payload=None, expected=ExpectedSigner(public_key_pem=p.keys[1].read_bytes())
        )


def test_rebuild_from_the_bundle_clones_the_recorded_commit_on_a_named_builder(
    published: Published, tmp_path: Path, engine_starts: list[Path],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    p = published
    out = tmp_path / "out"
    # A bundle whose name holds a C1 control and a bidi override: --format json is ASCII.
    bundle = tmp_path / "prov\u202e\x9b[31m.json"
    shutil.copyfile(p.out / "bundles" / "provenance.sigstore.json", bundle)
    # --builder: the session engine's own BuildKit ($DOCKER_HOST), no private engine started
    code = main([
        "rebuild", str(bundle), "--source", str(p.moved),
        "--key", str(p.keys[1]), "-o", str(out), "--build-context", f"base={p.base}",
        "--format", "json", "--builder", "default",
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.isascii() and "\\u202e\\u009b[31m" in captured.out
    report = json.loads(captured.out)
    assert report["target"] == str(bundle)
    assert report["verdict"] == "reproduced"
    assert engine_starts == [] and report["rebuilder"]["engine_kind"] == "builder default"
    assert report["source"]["checkout"] == "clean clone"
    assert report["source"]["path"] == str(p.moved.resolve())
    assert git(p.moved, "rev-parse", "HEAD") == p.commit2  # the user's checkout is left alone


def test_refused_before_any_build(
    published: Published, tmp_path: Path, engine_starts: list[Path],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    p = published
    out = tmp_path / "out"
    bundle = p.out / "bundles" / "provenance.sigstore.json"
    # unsigned statement
    assert _rebuild(p, str(p.out / "provenance.intoto.json"), out) == 2
    assert "unsigned in-toto statement" in capsys.readouterr().err
    # tampered bundle: the signed payload changed
    doc = json.loads(bundle.read_text())
    import base64

    payload = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    _external(payload)["buildArgs"]["GREETING"] = "evil"
    doc["dsseEnvelope"]["payload"] = base64.b64encode(statement_bytes(payload)).decode()
    tampered = tmp_path / "tampered.sigstore.json"
    tampered.write_text(json.dumps(doc))
    assert _rebuild(p, str(tampered), out) == 2
    assert "not a provenance signed by the expected signer" in capsys.readouterr().err
    # another signer: of the bundle, and of the image
    _, stranger = generate_ephemeral_key(tmp_path / "stranger")
    argv = ["--source", str(p.repo), "--key", str(stranger), "-o", str(out)]
    assert main(["rebuild", str(bundle), *argv]) == 2
    assert "not a provenance signed by the expected signer" in capsys.readouterr().err
    assert main(["rebuild", f"{p.image}:1.0", *argv]) == 2
    assert "no SLSA provenance signed by the expected signer" in capsys.readouterr().err
    # --push without --attest
    assert _rebuild(p, str(bundle), out, "--push") == 2
    assert "--push needs --attest" in capsys.readouterr().err
    # a registry that does not answer: exit 3
    dead = ["rebuild", "127.0.0.1:9/seal/x:1", "--source", str(p.repo), "--key", str(p.keys[1])]
    assert main([*dead, "-o", str(out), "--timeout", "5"]) == 3
    capsys.readouterr()
    assert engine_starts == []
    assert not (out / "oci").exists() and not (out / "rebuild.json").exists()


def test_what_makes_a_rebuild_impossible_exits_3_before_building(
    published: Published, tmp_path: Path, engine_starts: list[Path],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    p = published
    out = tmp_path / "out"
    bundle = str(p.out / "bundles" / "provenance.sigstore.json")
    base_digest = p.base.rpartition("@")[2]
    assert _rebuild(p, bundle, out, base="") == 3
    err = capsys.readouterr().err
    assert "build context base" in err and base_digest in err

    def normalization(st: dict[str, Any]) -> None:
        st["predicate"]["buildDefinition"]["internalParameters"]["contextNormalization"] = 999

    assert _rebuild(p, str(_signed_copy(p, tmp_path, normalization)), out) == 3
    err = capsys.readouterr().err
    assert "context normalization 999" in err and "Use modelseal" in err

    def no_commit(st: dict[str, Any]) -> None:
        deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        st["predicate"]["buildDefinition"]["resolvedDependencies"] = [
            d for d in deps if "gitCommit" not in d.get("digest", {})
        ]

    assert _rebuild(p, str(_signed_copy(p, tmp_path, no_commit)), out) == 3
    assert "no source commit" in capsys.readouterr().err

    def escaping(st: dict[str, Any]) -> None:
        _external(st)["source"]["context"] = "../elsewhere"

    assert _rebuild(p, str(_signed_copy(p, tmp_path, escaping)), out) == 3
    assert "not a path inside the repository" in capsys.readouterr().err

    def unknown(st: dict[str, Any]) -> None:
        _external(st)["secretSauce"] = True

    assert _rebuild(p, str(_signed_copy(p, tmp_path, unknown)), out) == 3
    assert "secretSauce" in capsys.readouterr().err

    def unknown_commit(st: dict[str, Any]) -> None:
        for dep in st["predicate"]["buildDefinition"]["resolvedDependencies"]:
            if "gitCommit" in dep.get("digest", {}):
                dep["digest"]["gitCommit"] = "0" * 40

    assert _rebuild(p, str(_signed_copy(p, tmp_path, unknown_commit)), out) == 3
    assert "0" * 40 + " is not in" in capsys.readouterr().err

    # an --out-dir inside the build context of --source (model weights are copied from there)
    assert _rebuild(p, bundle, p.repo / "rebuilt") == 2
    assert "a directory the rebuild reads" in capsys.readouterr().err
    assert not (p.repo / "rebuilt").exists()
    assert engine_starts == []


def _differs(p: Published, tmp_path: Path, bundle: Path, *, source: Path | None = None,
             base: str | None = None, expected: str | None = None) -> dict[str, Any]:  # fmt: skip
    out = tmp_path / "out"
    code = main([
        "rebuild", str(bundle), "--source", str(source or p.repo), "--key", str(p.keys[1]),
        "-o", str(out), "--build-context", f"base={base or p.base}",
    ])  # fmt: skip
    report = json.loads((out / "rebuild.json").read_text())
    assert code == 1, report
    assert report["verdict"] == "differs" and report["expected_digest"] == (expected or p.digest)
    assert report["rebuilt_digest"] != report["expected_digest"]
    return report


def _details(report: dict[str, Any]) -> str:
    return "\n".join(d["detail"] for d in report["differences"])


def test_a_lying_build_arg_is_named(
    published: Published, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def lie(st: dict[str, Any]) -> None:
        _external(st)["buildArgs"]["GREETING"] = "evil"

    report = _differs(published, tmp_path, _signed_copy(published, tmp_path, lie))
    assert "/srv/greeting (" in _details(report)
    assert "DIFFERS" in capsys.readouterr().out


def test_a_lying_commit_names_the_model_file(published: Published, tmp_path: Path) -> None:
    p = published

    v1 = hashlib.sha256(b"weights v1\n").hexdigest()

    def lie(st: dict[str, Any]) -> None:
        deps = st["predicate"]["buildDefinition"]["resolvedDependencies"]
        for dep in deps:
            if "gitCommit" in dep.get("digest", {}):
                dep["digest"]["gitCommit"] = p.commit2
        # the model pinned as the models gate records it (what was really built: v1)
        deps.append({
            "name": "model.bin", "uri": "file:model.bin", "digest": {"sha256": v1},
            "annotations": {"size": 11, "format": "unknown"},
        })  # fmt: skip

    report = _differs(p, tmp_path, _signed_copy(p, tmp_path, lie), source=p.moved)
    assert report["source"]["checkout"] == "clean clone"
    assert "/srv/model.bin (" in _details(report)
    assert any(n.startswith("model model.bin: sha256 ") and v1 in n for n in report["notes"])


def test_an_image_built_from_an_uncommitted_model_change_differs(
    published: Published, tmp_path: Path
) -> None:
    """The builder's tree had model.bin modified but not committed: its provenance names
    commit1, and a rebuild of commit1 names the model file."""
    p = published
    dirty = tmp_path / "dirty"
    git(tmp_path, "clone", "-q", str(p.repo), str(dirty))
    git(dirty, "checkout", "-q", p.commit1)
    (dirty / "model.bin").write_bytes(b"weights swapped in\n")
    policy = tmp_path / "modelseal.yml"
    policy.write_text(POLICY)
    code = main([
        "run", str(dirty), "--policy", str(policy), "--build-context", f"base={p.base}",
        "--build-arg", "GREETING=hello", "-o", str(tmp_path / "built"), "--gate", "build",
        "--push", f"{p.image}:dirty", "--sign", "key", "--key", str(p.keys[0]),
        "--no-evidence-cache",
    ])  # fmt: skip
    assert code == 0
    provenance = json.loads((tmp_path / "built" / "provenance.intoto.json").read_text())
    commits = [
        d["digest"]["gitCommit"]
        for d in provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
        if "gitCommit" in d.get("digest", {})
    ]
    assert commits == [p.commit1]
    report = _differs(
        p, tmp_path, tmp_path / "built" / "bundles" / "provenance.sigstore.json",
        expected=json.loads((tmp_path / "built" / "publish.json").read_text())["digest"],
    )  # fmt: skip
    assert "/srv/model.bin (" in _details(report)


def test_a_lying_base_digest_is_named(published: Published, tmp_path: Path) -> None:
    p = published
    other = tmp_path / "other-base"
    shutil.copytree(
        Path(p.base.removeprefix("oci-layout://").rpartition("@")[0]).parent / "ctx", other,
        symlinks=True,
    )  # fmt: skip
    (other / "rootfs" / "etc").mkdir()
    (other / "rootfs" / "etc" / "planted").write_text("not the recorded base\n")
    digest = build_layout(other, tmp_path / "other-oci")
    layout = f"oci-layout://{tmp_path / 'other-oci'}@{digest}"

    def lie(st: dict[str, Any]) -> None:
        _external(st)["buildContexts"]["base"]["digest"] = digest
        for dep in st["predicate"]["buildDefinition"]["resolvedDependencies"]:
            if dep.get("name") == "base":
                dep["digest"]["sha256"] = digest.removeprefix("sha256:")

    report = _differs(p, tmp_path, _signed_copy(p, tmp_path, lie), base=layout)
    assert "/etc/planted (added)" in _details(report)


def test_provenances_by_the_signer_that_disagree_are_refused(
    published: Published, tmp_path: Path, engine_starts: list[Path],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The same image in another repository, with two provenance referrers by the builder's
    key that describe different builds: neither is rebuilt from."""
    from modelseal.oci import OciLayout
    from modelseal.publish.cosign import bundle_referrer_manifest

    p = published
    host = p.image.split("/", 1)[0]
    client = RegistryClient(host, "seal/disagree")
    client.push_layout(OciLayout(p.out / "oci"), p.digest)
    media, body, _ = client.get_manifest(p.digest)
    lie = copy.deepcopy(p.provenance)
    _external(lie)["buildArgs"]["GREETING"] = "evil"
    signer = KeySigner.from_file(p.keys[0])
    for statement in (p.provenance, lie):
        manifest, blobs = bundle_referrer_manifest(
            signer.sign_statement(statement), p.digest, len(body), media
        )
        for digest, blob in blobs.items():
            client.push_blob(digest, blob)
        client.add_referrer(p.digest, manifest)
    assert _rebuild(p, f"{host}/seal/disagree@{p.digest}", tmp_path / "out") == 2
    assert "describe different builds" in capsys.readouterr().err
    assert engine_starts == []


def test_a_registry_that_cannot_be_read_for_the_diff_still_exits_1(
    published: Published, tmp_path: Path
) -> None:
    """The provenance names an image on a registry that does not answer, and a digest the
    rebuild does not give: still "differs" (exit 1), with both digests and a note."""
    p = published
    other = "sha256:" + "e" * 64

    def lie(st: dict[str, Any]) -> None:
        st["subject"] = [{"name": "127.0.0.1:9/seal/gone", "digest": {"sha256": "e" * 64}}]

    out = tmp_path / "out"
    code = main([
        "rebuild", str(_signed_copy(p, tmp_path, lie)), "--source", str(p.repo),
        "--key", str(p.keys[1]), "-o", str(out), "--build-context", f"base={p.base}",
        "--timeout", "30",
    ])  # fmt: skip
    report = json.loads((out / "rebuild.json").read_text())
    assert code == 1
    assert report["verdict"] == "differs" and report["expected_digest"] == other
    assert report["rebuilt_digest"] == p.digest and report["differences"] == []
    assert any("could not be fetched" in n for n in report["notes"]), report["notes"]


def test_the_attestation_goes_to_the_registry_of_the_provenances_subject(
    published: Published, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The target's registry client is reused for the attestation only when the subject names
    the same registry and repository: here the image is read from the local registry, but its
    provenance's subject is the same repository on another (dead) registry — the attestation
    goes there (and fails: exit 3), not to the target's registry."""
    from modelseal.oci import OciLayout
    from modelseal.publish.cosign import bundle_referrer_manifest

    p = published
    host = p.image.split("/", 1)[0]
    client = RegistryClient(host, "seal/elsewhere")
    client.push_layout(OciLayout(p.out / "oci"), p.digest)
    media, body, _ = client.get_manifest(p.digest)
    statement = copy.deepcopy(p.provenance)
    statement["subject"][0]["name"] = "127.0.0.1:9/seal/elsewhere"
    manifest, blobs = bundle_referrer_manifest(
        KeySigner.from_file(p.keys[0]).sign_statement(statement), p.digest, len(body), media
    )
    for digest, blob in blobs.items():
        client.push_blob(digest, blob)
    client.add_referrer(p.digest, manifest)
    before = client.referrers(p.digest, BUNDLE_MEDIA_TYPE)
    rebuilder_key, _ = generate_ephemeral_key(tmp_path / "rebuilder")
    out = tmp_path / "out"
    code = _rebuild(
        p, f"{host}/seal/elsewhere@{p.digest}", out, "--timeout", "20",
        "--attest", "--push", "--sign", "key", "--signing-key", str(rebuilder_key),
    )  # fmt: skip
    assert code == 3, capsys.readouterr()
    assert "attaching the rebuild attestation" in capsys.readouterr().err
    assert client.referrers(p.digest, BUNDLE_MEDIA_TYPE) == before
    assert json.loads((out / "rebuild.json").read_text())["verdict"] == "reproduced"


def test_the_recorded_compression_is_rebuilt_and_none_means_gzip(
    published: Published, tmp_path: Path
) -> None:
    """An image built with build.compression gzip records it; the rebuild builds with it and
    reproduces the image (the layout finalizer's zlib output included). The same provenance
    without the record is rebuilt with gzip's default level, which gives other layer bytes:
    the rebuild honours what is recorded, and only that."""
    p = published
    # The default: zstd (issue 16), recorded like any other choice.
    assert _external(p.provenance)["compression"] == {"type": "zstd", "force": False}
    policy = tmp_path / "modelseal.yml"
    policy.write_text(
        POLICY.replace("build:\n", "build:\n  compression: gzip\n  compression_level: 5\n")
    )
    built = tmp_path / "built"
    code = main([
        "run", str(p.repo), "--policy", str(policy), "--build-context", f"base={p.base}",
        "--build-arg", "GREETING=hello", "-o", str(built), "--gate", "build",
        "--push", f"{p.image}:gzip", "--sign", "key", "--key", str(p.keys[0]),
        "--no-evidence-cache",
    ])  # fmt: skip
    assert code == 0
    digest = json.loads((built / "publish.json").read_text())["digest"]
    assert digest != p.digest
    provenance = json.loads((built / "provenance.intoto.json").read_text())
    assert _external(provenance)["compression"] == {"type": "gzip", "level": 5, "force": False}
    code = _rebuild(p, str(built / "bundles" / "provenance.sigstore.json"), tmp_path / "again")
    report = json.loads((tmp_path / "again" / "rebuild.json").read_text())
    assert code == 0, report
    assert report["verdict"] == "reproduced" and report["rebuilt_digest"] == digest
    older = copy.deepcopy(provenance)
    del _external(older)["compression"]
    bundle = tmp_path / "older.sigstore.json"
    bundle.write_bytes(KeySigner.from_file(p.keys[0]).sign_statement(older).bundle_json())
    report = _differs(p, tmp_path, bundle, expected=digest)
    assert report["differences"]  # the layers: gzip level 6 now, level 5 then
