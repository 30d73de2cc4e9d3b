"""A tiny model server: a 2-layer MLP classifier, safetensors weights, standard library only.

The container image's Python is Debian's bare ``python3`` (no numpy), so the safetensors reader
and the maths are plain Python.

Environment:
  PORT        port to listen on (default 8080)
  HOST        address to bind (default 0.0.0.0)
  MODEL_PATH  the model file (default /app/model/model.safetensors)

Endpoints:
  GET  /healthz  -> {"status": "ok", "model": NAME, "sha256": HEX}
  POST /predict  {"inputs": [[f1, f2, f3, f4], ...]}
                 -> {"predictions": [{"label": NAME, "scores": [p1, p2, p3]}, ...]}
Bad input gets a 400 with {"error": "..."}; an over-large body a 413.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import struct
import sys
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_MODEL_PATH = "/app/model/model.safetensors"
DEFAULT_PORT = 8080

#: The largest safetensors header accepted (the reference implementation's limit).
MAX_HEADER_BYTES = 100_000_000
#: The largest model file this server will load.
MAX_MODEL_BYTES = 64 * 1024 * 1024
#: The largest /predict request body, and the most rows one request may hold.
MAX_BODY_BYTES = 64 * 1024
MAX_ROWS = 256
#: Scores are rounded so responses are stable across C libraries' ``exp``.
SCORE_DECIMALS = 6


class ModelError(ValueError):
    """The model file is not a valid safetensors file or not the model this server expects."""


class InputError(ValueError):
    """A /predict request body that cannot be served (answered with 400)."""


# --------------------------------------------------------------------------------------------
# safetensors reader


def parse_safetensors(
    blob: bytes,
) -> tuple[dict[str, tuple[list[int], list[float]]], dict[str, str]]:
    """Parse a safetensors file held in ``blob``.

    Returns ``({name: (shape, flat float values)}, metadata)``. Only F32 tensors are accepted.
    Raises :class:`ModelError` for anything malformed: a header length out of bounds, a header
    that is not a JSON object, a tensor whose shape does not match its byte span, offsets outside
    the data section, overlaps or gaps between tensors, non-finite values.
    """
    if len(blob) < 8:
        raise ModelError(f"file too short for a safetensors header ({len(blob)} bytes)")
    (header_len,) = struct.unpack_from("<Q", blob, 0)
    if header_len < 2 or header_len > MAX_HEADER_BYTES:
        raise ModelError(f"header length {header_len} out of bounds")
    if 8 + header_len > len(blob):
        raise ModelError(
            f"header length {header_len} runs past the end of the file ({len(blob)} bytes)"
        )
    raw_header = blob[8 : 8 + header_len]
    if not raw_header.startswith(b"{"):
        raise ModelError("header does not start with '{'")
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"header is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ModelError("header is not a JSON object")

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ModelError("__metadata__ must map strings to strings")

    data = memoryview(blob)[8 + header_len :]
    spans: list[tuple[int, int, str]] = []
    tensors: dict[str, tuple[list[int], list[float]]] = {}
    for name, info in header.items():
        if not isinstance(info, dict):
            raise ModelError(f"tensor {name!r}: entry is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype != "F32":
            raise ModelError(f"tensor {name!r}: dtype {dtype!r} is not supported (F32 only)")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise ModelError(f"tensor {name!r}: shape must be a list of non-negative integers")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise ModelError(f"tensor {name!r}: data_offsets must be two integers")
        begin, end = offsets
        if not 0 <= begin <= end <= len(data):
            raise ModelError(
                f"tensor {name!r}: data_offsets [{begin}, {end}] outside the data section "
                f"({len(data)} bytes)"
            )
        count = math.prod(shape)
        if count * 4 != end - begin:
            raise ModelError(
                f"tensor {name!r}: shape {shape} needs {count * 4} bytes, span holds {end - begin}"
            )
        values = list(struct.unpack_from(f"<{count}f", data, begin))
        if not all(math.isfinite(v) for v in values):
            raise ModelError(f"tensor {name!r}: holds a non-finite value")
        tensors[name] = (list(shape), values)
        spans.append((begin, end, name))

    # The tensors must tile the data section exactly: no overlaps, no gaps, nothing trailing.
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise ModelError(
                f"tensor {name!r}: starts at {begin}, expected {position} (gap or overlap)"
            )
        position = end
    if position != len(data):
        raise ModelError(f"{len(data) - position} trailing bytes after the last tensor")
    return tensors, dict(metadata)


# --------------------------------------------------------------------------------------------
# The model


def _rows(shape: list[int], flat: list[float]) -> list[list[float]]:
    cols = shape[1]
    return [flat[i * cols : (i + 1) * cols] for i in range(shape[0])]


@dataclass(frozen=True)
class Model:
    """``softmax(W2 . relu(W1 . x + b1) + b2)`` with weights from a safetensors file."""

    name: str
    sha256: str
    labels: tuple[str, ...]
    w1: tuple[tuple[float, ...], ...]
    b1: tuple[float, ...]
    w2: tuple[tuple[float, ...], ...]
    b2: tuple[float, ...]

    @property
    def n_features(self) -> int:
        return len(self.w1[0])

    @classmethod
    def from_bytes(cls, blob: bytes) -> Model:
        tensors, metadata = parse_safetensors(blob)
        needed = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
        missing = [n for n in needed if n not in tensors]
        if missing:
            raise ModelError(f"model lacks tensor(s) {', '.join(missing)}")
        (s1, w1), (sb1, b1) = tensors["fc1.weight"], tensors["fc1.bias"]
        (s2, w2), (sb2, b2) = tensors["fc2.weight"], tensors["fc2.bias"]
        if len(s1) != 2 or len(s2) != 2 or len(sb1) != 1 or len(sb2) != 1:
            raise ModelError("weights must be 2-D and biases 1-D")
        hidden, n_in = s1
        n_out = s2[0]
        if (
            n_in < 1
            or hidden < 1
            or n_out < 1
            or sb1[0] != hidden
            or s2[1] != hidden
            or sb2[0] != n_out
        ):
            raise ModelError(
                f"inconsistent shapes: fc1.weight {s1}, fc1.bias {sb1}, "
                f"fc2.weight {s2}, fc2.bias {sb2}"
            )
        labels = tuple(metadata["labels"].split(",")) if metadata.get("labels") else ()
        if len(labels) != n_out:
            labels = tuple(f"class_{i}" for i in range(n_out))
        return cls(
            name=metadata.get("model", "unnamed"),
            sha256=hashlib.sha256(blob).hexdigest(),
            labels=labels,
            w1=tuple(tuple(r) for r in _rows(s1, w1)),
            b1=tuple(b1),
            w2=tuple(tuple(r) for r in _rows(s2, w2)),
            b2=tuple(b2),
        )

    def predict_one(self, x: list[float]) -> dict[str, Any]:
        hidden = [
            max(0.0, sum(w * v for w, v in zip(row, x, strict=True)) + b)
            for row, b in zip(self.w1, self.b1, strict=True)
        ]
        logits = [
            sum(w * h for w, h in zip(row, hidden, strict=True)) + b
            for row, b in zip(self.w2, self.b2, strict=True)
        ]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = sum(exps)
        scores = [round(e / total, SCORE_DECIMALS) for e in exps]
        best = max(range(len(logits)), key=logits.__getitem__)
        return {"label": self.labels[best], "scores": scores}

    def predict(self, inputs: list[list[float]]) -> list[dict[str, Any]]:
        return [self.predict_one(row) for row in inputs]


def load_model(path: str | os.PathLike[str]) -> Model:
    """Read and validate the model at ``path`` (raises :class:`ModelError`)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ModelError(f"{p}: {size} bytes is larger than the {MAX_MODEL_BYTES} allowed")
        blob = p.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model {p}: {exc.strerror or exc}") from None
    try:
        return Model.from_bytes(blob)
    except ModelError as exc:
        raise ModelError(f"{p}: {exc}") from None


def parse_inputs(body: bytes, n_features: int) -> list[list[float]]:
    """Validate a /predict body and return its rows as floats (raises :class:`InputError`)."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError("request body is not valid JSON") from None
    if not isinstance(doc, dict) or "inputs" not in doc:
        raise InputError('request body must be a JSON object with an "inputs" list')
    rows = doc["inputs"]
    if not isinstance(rows, list) or not rows:
        raise InputError('"inputs" must be a non-empty list of rows')
    if len(rows) > MAX_ROWS:
        raise InputError(f'"inputs" holds {len(rows)} rows; at most {MAX_ROWS} per request')
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != n_features:
            raise InputError(f"inputs[{i}] must be a list of {n_features} numbers")
        values = []
        for v in row:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise InputError(f"inputs[{i}] must hold numbers only")
            f = float(v)
            if not math.isfinite(f):
                raise InputError(f"inputs[{i}] holds a non-finite number")
            values.append(f)
        out.append(values)
    return out


# --------------------------------------------------------------------------------------------
# HTTP


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: Model, *, quiet: bool = False) -> None:
        self.model = model
        self.quiet = quiet
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    server: ModelServer
    server_version = "modelseal-example/1"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    #: Seconds a connection may sit idle before it is dropped (a slow client cannot hold a thread).
    timeout = 30

    def _send_json(self, status: int, doc: dict[str, Any], *, close: bool = False) -> None:
        body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str, *, close: bool = False) -> None:
        self._send_json(status, {"error": message}, close=close)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/healthz":
            model = self.server.model
            self._send_json(
                HTTPStatus.OK, {"status": "ok", "model": model.name, "sha256": model.sha256}
            )
        elif self.path.split("?", 1)[0] == "/predict":
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use POST for /predict")
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no such endpoint: {self.path.split('?', 1)[0]}")

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/predict":
            # The body was not read: close the connection rather than parse it as a request.
            self._error(HTTPStatus.NOT_FOUND, "no such endpoint", close=True)
            return
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length_header is None:
            self._error(
                HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required", close=True
            )
            return
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self._error(HTTPStatus.BAD_REQUEST, "invalid Content-Length", close=True)
            return
        if length > MAX_BODY_BYTES:
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body over {MAX_BODY_BYTES} bytes",
                close=True,
            )
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self._error(
                HTTPStatus.BAD_REQUEST, "request body shorter than Content-Length", close=True
            )
            return
        try:
            inputs = parse_inputs(body, self.server.model.n_features)
        except InputError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        self._send_json(HTTPStatus.OK, {"predictions": self.server.model.predict(inputs)})

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


def make_server(
    model: Model,
    host: str = "0.0.0.0",  # noqa: S104 (a container serves on all its interfaces)
    port: int = DEFAULT_PORT,
    *,
    quiet: bool = False,
) -> ModelServer:
    """A server for ``model`` bound to ``host:port`` (port 0: an ephemeral one); not yet serving."""
    return ModelServer((host, port), model, quiet=quiet)


def main() -> int:
    model_path = os.environ.get("MODEL_PATH", DEFAULT_MODEL_PATH)
    host = os.environ.get("HOST", "0.0.0.0")  # noqa: S104 (a container serves on all interfaces)
    try:
        port = int(os.environ.get("PORT", str(DEFAULT_PORT)))
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        print(
            f"server: error: PORT={os.environ.get('PORT')!r} is not a port number", file=sys.stderr
        )
        return 2
    try:
        model = load_model(model_path)
    except ModelError as exc:
        print(f"server: error: {exc}", file=sys.stderr)
        return 1
    try:
        httpd = make_server(model, host, port)
    except OSError as exc:
        print(
            f"server: error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    # As PID 1 in a container, SIGTERM is ignored unless handled: make `docker stop` quick.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    bound_host, bound_port = httpd.server_address[:2]
    print(
        f"server: model {model.name} sha256:{model.sha256} listening on {bound_host}:{bound_port}",
        file=sys.stderr,
        flush=True,
    )
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
