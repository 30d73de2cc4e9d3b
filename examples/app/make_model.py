"""Generate the example model: a tiny iris-style MLP classifier in the safetensors format.

The model is 4 features -> 8 hidden units (ReLU) -> 3 class logits. Its weights start from a
fixed-seed PRNG and are then fitted with 200 full-batch gradient steps to a synthetic, iris-like
data set drawn from the same PRNG (inputs standardized for training, the scaling then folded into
the first layer), so ``/predict`` gives sensible answers for raw measurements in cm.

Everything is deterministic on every platform: ``random.Random(seed).random()`` is specified
bit-for-bit (Mersenne Twister), training uses only IEEE-754 ``+ - *`` in a fixed order (a
squared-error loss on one-hot targets: no ``exp``/``log``, whose last bit may differ between C
libraries), and the final weights are rounded to 5 decimals before being stored as float32.
Running this twice gives byte-identical files.

The file is written with the standard library only, following the safetensors format:

* 8 bytes: the header length N, unsigned little-endian;
* N bytes: a UTF-8 JSON object, one entry per tensor (``dtype``, ``shape``, ``data_offsets``
  relative to the data section) plus ``__metadata__`` (string values only), keys sorted,
  padded with spaces so the data section starts 8-byte aligned;
* the tensors' raw little-endian bytes, contiguous, in name order, no gaps.

Usage: ``python3 make_model.py [OUTPUT]`` (default: ``model/model.safetensors`` beside this file).
"""

from __future__ import annotations

import json
import os
import random
import struct
import sys
import tempfile
from pathlib import Path

SEED = 20231114
MODEL_NAME = "modelseal-example-mlp"
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
LABELS = ("setosa", "versicolor", "virginica")
HIDDEN = 8
EPOCHS = 200
LEARNING_RATE = 0.1
SAMPLES_PER_CLASS = 40
DECIMALS = 5
# Squared-error training leaves the logits near 0/1; scaling the output layer (argmax unchanged)
# makes the server's softmax scores read like confidences.
LOGIT_SCALE = 5.0

# Per-class feature means and half-widths (cm), close to Fisher's iris data set.
CLASS_CENTRES = (
    ((5.0, 3.4, 1.5, 0.25), (0.5, 0.5, 0.3, 0.15)),
    ((5.9, 2.8, 4.3, 1.3), (0.6, 0.4, 0.6, 0.3)),
    ((6.6, 3.0, 5.6, 2.0), (0.7, 0.4, 0.6, 0.3)),
)

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "model" / "model.safetensors"

Matrix = list[list[float]]


def make_dataset(rng: random.Random) -> list[tuple[list[float], int]]:
    """Uniform noise around each class centre (``random()`` only: exact on every platform)."""
    data = []
    for label, (centre, spread) in enumerate(CLASS_CENTRES):
        for _ in range(SAMPLES_PER_CLASS):
            x = [c + (2.0 * rng.random() - 1.0) * s for c, s in zip(centre, spread, strict=True)]
            data.append((x, label))
    # A deterministic interleaving of the classes (Fisher-Yates with the same generator).
    for i in range(len(data) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        data[i], data[j] = data[j], data[i]
    return data


def init_params(rng: random.Random) -> dict[str, list[float] | Matrix]:
    def uniform(limit: float) -> float:
        return (2.0 * rng.random() - 1.0) * limit

    n_in, n_out = len(FEATURES), len(LABELS)
    return {
        "fc1.weight": [[uniform(0.5) for _ in range(n_in)] for _ in range(HIDDEN)],
        "fc1.bias": [uniform(0.1) for _ in range(HIDDEN)],
        "fc2.weight": [[uniform(0.35) for _ in range(HIDDEN)] for _ in range(n_out)],
        "fc2.bias": [uniform(0.1) for _ in range(n_out)],
    }


def train(params: dict, data: list[tuple[list[float], int]]) -> None:
    """Full-batch gradient descent on the squared error between logits and one-hot targets."""
    w1, b1, w2, b2 = (
        params["fc1.weight"],
        params["fc1.bias"],
        params["fc2.weight"],
        params["fc2.bias"],
    )
    n_in, n_out, n = len(FEATURES), len(LABELS), len(data)
    scale = 2.0 / n
    for _ in range(EPOCHS):
        gw1 = [[0.0] * n_in for _ in range(HIDDEN)]
        gb1 = [0.0] * HIDDEN
        gw2 = [[0.0] * HIDDEN for _ in range(n_out)]
        gb2 = [0.0] * n_out
        for x, label in data:
            pre = [
                sum(w * v for w, v in zip(row, x, strict=True)) + b
                for row, b in zip(w1, b1, strict=True)
            ]
            h = [p if p > 0.0 else 0.0 for p in pre]
            out = [
                sum(w * v for w, v in zip(row, h, strict=True)) + b
                for row, b in zip(w2, b2, strict=True)
            ]
            d_out = [(o - (1.0 if k == label else 0.0)) * scale for k, o in enumerate(out)]
            for k in range(n_out):
                gb2[k] += d_out[k]
                for j in range(HIDDEN):
                    gw2[k][j] += d_out[k] * h[j]
            for j in range(HIDDEN):
                if pre[j] <= 0.0:
                    continue
                d_h = sum(d_out[k] * w2[k][j] for k in range(n_out))
                gb1[j] += d_h
                for i in range(n_in):
                    gw1[j][i] += d_h * x[i]
        for k in range(n_out):
            b2[k] -= LEARNING_RATE * gb2[k]
            for j in range(HIDDEN):
                w2[k][j] -= LEARNING_RATE * gw2[k][j]
        for j in range(HIDDEN):
            b1[j] -= LEARNING_RATE * gb1[j]
            for i in range(n_in):
                w1[j][i] -= LEARNING_RATE * gw1[j][i]


def standardize(data: list[tuple[list[float], int]]) -> tuple[list[float], list[float]]:
    """Per-feature mean and half-range: training on centred, scaled inputs converges quickly."""
    n_in = len(FEATURES)
    mean = [sum(x[i] for x, _ in data) / len(data) for i in range(n_in)]
    half = [(max(x[i] for x, _ in data) - min(x[i] for x, _ in data)) / 2.0 for i in range(n_in)]
    return mean, half


def build_params() -> dict[str, list[float] | Matrix]:
    rng = random.Random(SEED)  # noqa: S311 (reproducible weights, not secrets)
    params = init_params(rng)
    data = make_dataset(rng)
    mean, half = standardize(data)
    train(
        params, [([(v - m) / s for v, m, s in zip(x, mean, half, strict=True)], y) for x, y in data]
    )
    # Fold the scaling into the first layer, so the model takes raw measurements (cm):
    # w . ((x - m) / s) + b  ==  (w / s) . x + (b - sum(w * m / s)).
    w1, b1 = params["fc1.weight"], params["fc1.bias"]
    for j, row in enumerate(w1):
        b1[j] -= sum(w * m / s for w, m, s in zip(row, mean, half, strict=True))
        w1[j] = [w / s for w, s in zip(row, half, strict=True)]
    params["fc2.weight"] = [[w * LOGIT_SCALE for w in row] for row in params["fc2.weight"]]
    params["fc2.bias"] = [b * LOGIT_SCALE for b in params["fc2.bias"]]
    return params


def _flatten(value: list) -> tuple[list[float], list[int]]:
    if value and isinstance(value[0], list):
        return [v for row in value for v in row], [len(value), len(value[0])]
    return list(value), [len(value)]


def serialize(tensors: dict[str, list], metadata: dict[str, str]) -> bytes:
    """The safetensors bytes for float32 ``tensors`` (nested lists) and string ``metadata``."""
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        flat, shape = _flatten(tensors[name])
        # Round in double precision (correctly rounded in Python), then store as float32.
        data = struct.pack(f"<{len(flat)}f", *(round(v, DECIMALS) for v in flat))
        header[name] = {
            "dtype": "F32",
            "shape": shape,
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    raw = text.encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(chunks)


def model_bytes() -> bytes:
    metadata = {
        "format": "pt",
        "model": MODEL_NAME,
        "features": ",".join(FEATURES),
        "labels": ",".join(LABELS),
        "activation": "relu",
        "seed": str(SEED),
    }
    return serialize(build_params(), metadata)


def write_model(path: Path) -> Path:
    """Write the model to ``path`` atomically (a temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = model_bytes()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: make_model.py [OUTPUT]", file=sys.stderr)
        return 2
    path = write_model(Path(args[0]) if args else DEFAULT_OUTPUT)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
