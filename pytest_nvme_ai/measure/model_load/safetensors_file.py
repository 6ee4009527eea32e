"""The safetensors file format, read and written here without the safetensors package.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON (name -> dtype, shape,
[start, end) offsets into the data that follows; "__metadata__" -> strings), then the tensors' bytes.
The DeepSpeed aio loader needs the header to place tensors in its one aligned buffer, and the writer
streams random weights of any size (OPT-66b: 132 GB) without ever holding a model in memory.

Each tensor's CRC-32 is computed while it is written and kept in a manifest next to the file, so every
loader's result can be checked tensor for tensor against what reached the drive.
"""
from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

MANIFEST_NAME = "nvme-ai-manifest.json"
WEIGHTS_NAME = "model.safetensors"       # the name transformers' from_pretrained looks for
MAX_HEADER_BYTES = 100 << 20             # safetensors' own limit: a larger "header" is a corrupt file
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
CHUNK_BYTES = 64 << 20                   # write (and checksum) random data in pieces of this size


class HeaderError(ValueError):
    """The file is not a well-formed safetensors file; the message names the file and the fault."""


class VerifyError(AssertionError):
    """A loader's tensors differ from what was written; the message names the loader and the tensor."""


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str                 # safetensors' name: F16, BF16, F32, ...
    shape: tuple[int, ...]
    start: int                 # offsets relative to the data section
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Header:
    data_start: int            # file offset of the data section: 8 + header length
    tensors: tuple[TensorEntry, ...]
    metadata: Mapping[str, str]

    @property
    def data_bytes(self) -> int:
        return max((t.end for t in self.tensors), default=0)

    @property
    def file_bytes(self) -> int:
        return self.data_start + self.data_bytes

    def entry(self, name: str) -> TensorEntry:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)


def parse_header(raw: bytes, what: str = "file") -> Header:
    """The header of a safetensors file from its first bytes (at least 8 + N); HeaderError when malformed."""
    if len(raw) < 8:
        raise HeaderError(f"{what}: {len(raw)} B is too short for a safetensors header length (8 B)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER_BYTES:
        raise HeaderError(f"{what}: header length {n} B exceeds {MAX_HEADER_BYTES} B: not a safetensors file")
    if len(raw) < 8 + n:
        raise HeaderError(f"{what}: header says {n} B of JSON but only {len(raw) - 8} B follow")
    try:
        doc = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(f"{what}: header is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise HeaderError(f"{what}: header is {type(doc).__name__}, not a JSON object")
    meta = doc.pop("__metadata__", None) or {}
    tensors = sorted((_entry(name, spec, what) for name, spec in doc.items()), key=lambda t: t.start)
    _check_contiguous(tensors, what)
    return Header(data_start=8 + n, tensors=tuple(tensors), metadata=dict(meta))


def _entry(name: str, spec: Any, what: str) -> TensorEntry:
    try:
        dtype, shape, (start, end) = str(spec["dtype"]), tuple(int(d) for d in spec["shape"]), spec["data_offsets"]
    except (KeyError, TypeError, ValueError) as exc:
        raise HeaderError(f"{what}: tensor {name!r} has a malformed entry {spec!r} ({exc})") from None
    if dtype not in DTYPE_BYTES:
        raise HeaderError(f"{what}: tensor {name!r} has dtype {dtype!r}, not one of {sorted(DTYPE_BYTES)}")
    numel = 1
    for d in shape:
        numel *= d
    if int(end) - int(start) != numel * DTYPE_BYTES[dtype]:
        raise HeaderError(f"{what}: tensor {name!r} spans {int(end) - int(start)} B but {dtype}{list(shape)} "
                          f"needs {numel * DTYPE_BYTES[dtype]} B")
    return TensorEntry(name, dtype, shape, int(start), int(end))


def _check_contiguous(tensors: Sequence[TensorEntry], what: str) -> None:
    pos = 0
    for t in tensors:
        if t.start != pos:
            raise HeaderError(f"{what}: tensor {t.name!r} starts at {t.start}, expected {pos} (gap or overlap)")
        pos = t.end


def read_header(path: Path) -> Header:
    """Parse the header of the safetensors file at `path` (reads only the header)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise HeaderError(f"{path}: {len(head)} B is too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES:
            raise HeaderError(f"{path}: header length {n} B exceeds {MAX_HEADER_BYTES} B: not a safetensors file")
        header = parse_header(head + fh.read(n), str(path))
    size = path.stat().st_size
    if size != header.file_bytes:
        raise HeaderError(f"{path}: file is {size} B, its header describes {header.file_bytes} B")
    return header


def encode_header(entries: Iterable[tuple[str, str, Sequence[int]]], metadata: Mapping[str, str]) -> tuple[bytes, Header]:
    """The header bytes (length + JSON, padded with spaces to 8 B as safetensors pads) for tensors laid
    out back to back in the given order, and the parsed Header they describe."""
    doc: dict[str, Any] = {"__metadata__": dict(metadata)}
    pos = 0
    for name, dtype, shape in entries:
        numel = 1
        for d in shape:
            numel *= int(d)
        end = pos + numel * DTYPE_BYTES[dtype]
        doc[name] = {"dtype": dtype, "shape": [int(d) for d in shape], "data_offsets": [pos, end]}
        pos = end
    body = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    body += b" " * (-len(body) % 8)
    raw = struct.pack("<Q", len(body)) + body
    return raw, parse_header(raw, "encoded header")


def finite_f16_noise(n: int, rng: Any) -> bytes:
    """`n` bytes of random float16 values, all finite and below 2**-7 in magnitude: random mantissa and
    sign (a compressing drive cannot shrink them), the exponent's two top bits cleared (no inf/NaN, and
    small enough that a forward pass of the random model stays finite)."""
    import numpy as np

    words = np.frombuffer(rng.bytes(n), dtype=np.uint16) & np.uint16(0x9FFF)
    return words.tobytes()


def write_safetensors(path: Path, entries: Sequence[tuple[str, str, Sequence[int]]], seed: int,
                      metadata: Mapping[str, str] | None = None) -> tuple[Header, dict[str, int]]:
    """Write random F16 tensors to `path`, fsync it; return its Header and each tensor's CRC-32."""
    import numpy as np

    if any(dtype != "F16" for _, dtype, _ in entries):
        raise ValueError("write_safetensors writes F16 tensors only (what OPT checkpoints hold)")
    raw, header = encode_header(entries, metadata or {"format": "pt"})
    rng = np.random.default_rng(seed)
    crcs: dict[str, int] = {}
    with open(path, "wb") as fh:
        fh.write(raw)
        for t in header.tensors:
            crc = 0
            for off in range(0, t.nbytes, CHUNK_BYTES):
                chunk = finite_f16_noise(min(CHUNK_BYTES, t.nbytes - off), rng)
                crc = zlib.crc32(chunk, crc)
                fh.write(chunk)
            crcs[t.name] = crc
        fh.flush()
        os.fsync(fh.fileno())
    return header, crcs


# ---- the manifest: what was written, to check loads against --------------------------------------

@dataclass(frozen=True)
class Manifest:
    weights: str                          # file name in the model directory
    file_bytes: int
    crc32: Mapping[str, int]              # tensor name -> CRC-32 of its bytes as written
    model: str = ""                       # the model's name (opt-350m), for messages

    def to_dict(self) -> dict[str, Any]:
        return {"weights": self.weights, "file_bytes": self.file_bytes, "model": self.model,
                "crc32": dict(self.crc32)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Manifest":
        return cls(str(d["weights"]), int(d["file_bytes"]), {str(k): int(v) for k, v in d["crc32"].items()},
                   str(d.get("model", "")))

    def save(self, model_dir: Path) -> Path:
        path = model_dir / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, model_dir: Path) -> "Manifest":
        path = model_dir / MANIFEST_NAME
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path} is missing: the model directory was not written by nvme-ai "
                                    "(nothing to check a load against)") from None


def tensor_crc(tensor: Any) -> int:
    """CRC-32 of a torch tensor's bytes in memory (a CPU copy is made for other devices)."""
    import torch

    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous().reshape(-1).view(torch.uint8)
    return zlib.crc32(t.numpy())


def verify_tensors(loader: str, manifest: Manifest, header: Header, tensors: Mapping[str, Any]) -> int:
    """Check that `tensors` (name -> torch tensor, as the loader returned them) hold exactly what was written:
    every written tensor present, with its dtype, shape and bytes. Returns how many were checked; raises
    VerifyError naming the loader and the first tensor that differs. Extra names (a tied lm_head) are allowed."""
    dtypes = _torch_dtypes()
    for entry in header.tensors:
        if entry.name not in tensors:
            raise VerifyError(f"{loader}: tensor {entry.name!r} of {manifest.model or manifest.weights} is missing "
                              f"from what the loader returned ({len(tensors)} tensors)")
        t = tensors[entry.name]
        if t.dtype != dtypes[entry.dtype] or tuple(t.shape) != entry.shape:
            raise VerifyError(f"{loader}: tensor {entry.name!r} came back as {t.dtype}{list(t.shape)}, "
                              f"written as {entry.dtype}{list(entry.shape)}")
        got, want = tensor_crc(t), manifest.crc32[entry.name]
        if got != want:
            raise VerifyError(f"{loader}: tensor {entry.name!r} differs from what was written "
                              f"(CRC-32 {got:08x}, written {want:08x}): the load returned wrong bytes")
    return len(header.tensors)


def _torch_dtypes() -> dict[str, Any]:
    import torch

    return {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
            "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
            "BOOL": torch.bool}


def tensors_from_buffer(buffer: Any, header: Header) -> dict[str, Any]:
    """Views of each tensor in `buffer` (a uint8 torch tensor holding the whole file from offset 0)."""
    dtypes = _torch_dtypes()
    out = {}
    for t in header.tensors:
        lo, hi = header.data_start + t.start, header.data_start + t.end
        out[t.name] = buffer[lo:hi].view(dtypes[t.dtype]).view(t.shape)
    return out
