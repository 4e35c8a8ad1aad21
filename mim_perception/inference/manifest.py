"""Model bundles: a directory of files plus ``manifest.json`` that the runtime verifies before use.

The manifest records the sha256 of every file, the input contract (size, channel order, dtype), the
label spaces, the decoding defaults, metrics, parity of each export against torch, and how the model
was trained (data + commands), so a model file is never used without knowing what it is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mim_perception.core.errors import ModelLoadError
from mim_perception.core.model_io import INPUT_NAME, OUTPUT_NAMES  # noqa: F401 - re-exported with the manifest

MANIFEST = "manifest.json"
SCHEMA = 1


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    name: str
    architecture: str                       # registry name, e.g. "convnext_atto_detseg"
    input_height: int
    input_width: int
    input_format: str                       # "uint8 NCHW BGR", normalisation inside the model
    detection_classes: list[str]
    segmentation_classes: list[str]
    segmentation_palette_bgr: list[list[int]]
    seg_stride: int                         # segmentation output is input size / seg_stride
    topk: int                               # fixed candidates before NMS in exported graphs
    embed_dim: int
    files: dict[str, str]                   # role -> file name, e.g. {"onnx": "model.onnx", "torch": "model.pt"}
    sha256: dict[str, str]                  # file name -> sha256
    metrics: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)   # export -> max abs diff vs torch on real frames
    training: dict[str, Any] = field(default_factory=dict)   # data, commands, seeds, schedule
    schema: int = SCHEMA
    # External detectors (``import-model``): the adapter of their output convention, its input contract, the
    # model's own class names and the map to the stack's classes ({} = the model's names passed through).
    adapter: str = ""
    input_contract: dict[str, Any] = field(default_factory=dict)
    source_classes: list[str] = field(default_factory=list)
    class_map: dict[str, Any] = field(default_factory=dict)

    @property
    def external(self) -> bool:
        return bool(self.adapter)

    def path(self, bundle: Path, role: str) -> Path:
        if role not in self.files:
            raise ModelLoadError(f"model bundle {bundle} has no {role!r} file (it has {sorted(self.files)})")
        return bundle / self.files[role]


def write_manifest(bundle: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json``, filling ``sha256`` for every file named in ``files``."""
    hashes = {}
    for name in manifest.files.values():
        p = bundle / name
        if not p.is_file():
            raise ModelLoadError(f"cannot write manifest: {p} does not exist")
        hashes[name] = sha256_file(p)
    doc = asdict(manifest) | {"sha256": hashes}
    out = bundle / MANIFEST
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return out


def load_manifest(bundle: Path | str, roles: tuple[str, ...] = ()) -> Manifest:
    """Read and verify a bundle: schema, required fields, and the sha256 of each file in ``roles``
    (all files when empty). Raises ModelLoadError naming the problem."""
    b = Path(bundle)
    mpath = b / MANIFEST
    if not mpath.is_file():
        raise ModelLoadError(f"model bundle {b}: {MANIFEST} not found")
    try:
        doc = json.loads(mpath.read_text())
        if doc.get("schema") != SCHEMA:
            raise ModelLoadError(f"model bundle {b}: manifest schema {doc.get('schema')!r}, this version reads {SCHEMA}")
        m = Manifest(**doc)
    except (json.JSONDecodeError, TypeError) as e:
        raise ModelLoadError(f"model bundle {b}: malformed {MANIFEST}: {e}") from e
    for role in roles or tuple(m.files):
        p = m.path(b, role)
        want = m.sha256.get(p.name)
        if not p.is_file():
            raise ModelLoadError(f"model bundle {b}: {p.name} ({role}) is missing")
        if want is None or sha256_file(p) != want:
            raise ModelLoadError(f"model bundle {b}: {p.name} fails its sha256 check (corrupt or tampered); refusing to load")
    return m
