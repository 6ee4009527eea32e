"""Cold model load (measure/model_load/): the safetensors header, eviction and its check, the per-tensor check
of a corrupted file, and a real run of every loader on a micro model in a temp dir."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.core.cache import SessionCache
from pytest_nvme_ai.core.lifecycle import ChildRegistry
from pytest_nvme_ai.core.metrics import Metric
from pytest_nvme_ai.core.profiles import PROFILES
from pytest_nvme_ai.core.targets import Target
from pytest_nvme_ai.measure.model_load import pagecache
from pytest_nvme_ai.measure.model_load.models import OPT_CONFIGS, models_for, param_count, weight_bytes
from pytest_nvme_ai.measure.model_load.pagecache import StillCached, evict_verified, resident_bytes
from pytest_nvme_ai.measure.model_load.runner import ModelLoadError, ModelLoadRunner, loader_missing_reason
from pytest_nvme_ai.measure.model_load.safetensors_file import (HeaderError, Manifest, VerifyError, encode_header,
                                                                parse_header, read_header, verify_tensors,
                                                                write_safetensors)
from pytest_nvme_ai.measure.model_load.spec import LOADERS, LoadResult, LoadSpec, spec_from_dict

LAYOUT = [("embed.weight", "F16", (64, 32)), ("layer.0.bias", "F16", (32,)), ("layer.0.weight", "F16", (32, 32))]


# ---- the safetensors header ----------------------------------------------------------------------

def test_header_of_a_file_written_by_safetensors_itself(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    tensors = {"a": torch.zeros(3, 5, dtype=torch.float16), "b": torch.arange(7, dtype=torch.int64),
               "c": torch.ones(2, 2, 2, dtype=torch.float32)}
    path = tmp_path / "x.safetensors"
    st.save_file(tensors, str(path), metadata={"format": "pt"})

    header = read_header(path)

    assert {t.name: (t.dtype, t.shape) for t in header.tensors} == {"a": ("F16", (3, 5)), "b": ("I64", (7,)),
                                                                     "c": ("F32", (2, 2, 2))}
    assert header.metadata == {"format": "pt"}
    assert header.file_bytes == path.stat().st_size
    raw = path.read_bytes()
    for t in header.tensors:  # the offsets place each tensor's bytes exactly
        got = raw[header.data_start + t.start:header.data_start + t.end]
        assert got == tensors[t.name].numpy().tobytes()


def test_encoded_header_round_trips_and_is_padded_to_8_bytes() -> None:
    raw, header = encode_header(LAYOUT, {"format": "pt"})
    assert header.data_start % 8 == 0 and len(raw) == header.data_start
    assert parse_header(raw) == header
    assert [(t.start, t.end) for t in header.tensors] == [(0, 4096), (4096, 4160), (4160, 6208)]


@pytest.mark.parametrize("raw, words", [
    (b"\x01\x00", "too short"),
    (struct.pack("<Q", 1 << 40), "exceeds"),
    (struct.pack("<Q", 4) + b"{bad", "not JSON"),
    (struct.pack("<Q", 100) + b"{}", "only 2 B follow"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
])
def test_malformed_headers_are_refused_with_the_fault(raw: bytes, words: str) -> None:
    with pytest.raises(HeaderError, match=words):
        parse_header(raw)


def test_header_with_a_gap_or_a_wrong_size_is_refused() -> None:
    gap = json.dumps({"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
                      "b": {"dtype": "F16", "shape": [2], "data_offsets": [8, 12]}}).encode()
    with pytest.raises(HeaderError, match="'b' starts at 8, expected 4"):
        parse_header(struct.pack("<Q", len(gap)) + gap)
    short = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}).encode()
    with pytest.raises(HeaderError, match="needs 8 B"):
        parse_header(struct.pack("<Q", len(short)) + short)


# ---- writing, checking, and a corrupted byte -----------------------------------------------------

def _write(tmp_path: Path) -> tuple[Path, Manifest]:
    path = tmp_path / "model.safetensors"
    header, crcs = write_safetensors(path, LAYOUT, seed=3)
    manifest = Manifest(path.name, header.file_bytes, crcs, "layout")
    manifest.save(tmp_path)
    return path, manifest


def test_written_weights_load_with_safetensors_finite_and_equal_to_the_manifest(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    path, manifest = _write(tmp_path)

    tensors = st.load_file(str(path))

    assert verify_tensors("safetensors", Manifest.load(tmp_path), read_header(path), tensors) == len(LAYOUT)
    assert all(bool(torch.isfinite(t).all()) and float(t.abs().max()) < 2 ** -7 for t in tensors.values())
    assert len({float(t.float().std()) for t in tensors.values()}) == len(LAYOUT)  # random, not a constant


def _flip_one_byte(path: Path, tensor: str) -> None:
    header = read_header(path)
    offset = header.data_start + header.entry(tensor).start + 17
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x01]))


def test_a_corrupted_byte_fails_the_check_naming_loader_and_tensor(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    path, manifest = _write(tmp_path)
    _flip_one_byte(path, "layer.0.weight")

    with pytest.raises(VerifyError, match=r"safetensors: tensor 'layer.0.weight' differs from what was written"):
        verify_tensors("safetensors", manifest, read_header(path), st.load_file(str(path)))


def test_a_missing_or_reshaped_tensor_fails_the_check(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    path, manifest = _write(tmp_path)
    tensors = st.load_file(str(path))
    header = read_header(path)
    with pytest.raises(VerifyError, match="from_pretrained: tensor 'embed.weight' .* is missing"):
        verify_tensors("from_pretrained", manifest, header, {k: v for k, v in tensors.items() if k != "embed.weight"})
    with pytest.raises(VerifyError, match=r"came back as torch.float32\[64, 32\], written as F16\[64, 32\]"):
        verify_tensors("x", manifest, header, {**tensors, "embed.weight": tensors["embed.weight"].to(torch.float32)})


# ---- eviction -----------------------------------------------------------------------------------

def _cached_file(tmp_path: Path, size: int = 8 << 20) -> Path:
    path = tmp_path / "cached.bin"
    path.write_bytes(os.urandom(size))
    path.read_bytes()  # written and read back: in the page cache
    return path


def test_eviction_leaves_no_page_cached_and_mincore_agrees_with_fincore(tmp_path: Path) -> None:
    path = _cached_file(tmp_path)
    if resident_bytes(path) == 0:
        pytest.skip(f"{tmp_path}'s filesystem keeps no page cache for a just-read file: nothing to evict")

    before = evict_verified([path])

    assert before[str(path)] > 0 and resident_bytes(path) == 0
    fd = os.open(path, os.O_RDONLY)
    try:  # read 1 MiB back in, readahead off: exactly those pages are cached, nothing arrives later
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)
    now = resident_bytes(path)
    assert (1 << 20) <= now <= path.stat().st_size
    fincore = shutil.which("fincore")
    if fincore:  # util-linux's own count of the same pages
        out = subprocess.run([fincore, "--bytes", "--noheadings", "--output", "RES", str(path)],
                             capture_output=True, text=True, check=True).stdout
        assert int(out.split()[0]) == now


def test_pages_that_stay_cached_refuse_the_measurement(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _cached_file(tmp_path)
    if resident_bytes(path) == 0:
        pytest.skip(f"{tmp_path}'s filesystem keeps no page cache for a just-read file")
    monkeypatch.setattr(pagecache, "evict", lambda p: None)  # eviction that does nothing: pages stay

    with pytest.raises(StillCached, match=r"pages stay in the page cache .*cached.bin: \d+ B of 8388608 B"):
        evict_verified([path])


# ---- models and records -------------------------------------------------------------------------

def test_profile_models_and_sizes() -> None:
    assert models_for(PROFILES["quick"]) == ("opt-350m",)
    assert models_for(PROFILES["full"]) == ("opt-13b", "opt-30b", "opt-66b")
    assert 600e6 < weight_bytes(OPT_CONFIGS["opt-350m"]) < 700e6   # the 662 MB file of REFERENCE.md
    assert param_count(OPT_CONFIGS["opt-66b"]) == 65_719_701_504   # counted on the meta-device model


def test_specs_round_trip_and_refuse_unknown_loaders() -> None:
    spec = LoadSpec("deepspeed_aio", "/x")
    assert spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ValueError, match="unknown loader 'mmap'"):
        LoadSpec("mmap", "/x")
    r = LoadResult("safetensors", 1000, 0.5, 1000, 3, 0, "cpu", "0.8")
    assert LoadResult.from_dict(json.loads(json.dumps(r.to_dict()))) == r and r.bw == 2000


# ---- real runs of the children --------------------------------------------------------------------

class FakeRecorder:
    def __init__(self, tmp_path: Path) -> None:
        self.artifact_dir = tmp_path / "artifacts"
        self.artifact_dir.mkdir()
        self.session_cache = SessionCache()
        self.timeout = 600
        self.repeat = 1
        self.children = ChildRegistry()
        self.recorded: dict[str, Metric] = {}
        self.extra: dict[str, Any] = {}
        self.notes: list[str] = []

    def record_samples(self, name: str, samples: Any, **kw: Any) -> Metric:
        m = Metric.of(name, samples, **kw)
        self.recorded[name] = m
        return m

    def set_extra(self, key: str, value: Any) -> None:
        self.extra[key] = value

    def note(self, text: str) -> None:
        self.notes.append(text)

    def add_artifact(self, label: str, path: Any) -> str:
        return str(path)


@pytest.fixture
def micro(tmp_path: Path) -> tuple[ModelLoadRunner, Any]:
    """A runner on a temp-dir target with the micro OPT model written by a real child."""
    for module in ("torch", "transformers", "safetensors"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    root = tmp_path / "target"
    root.mkdir()
    runner = ModelLoadRunner(Target(root, "t", "run1", embedded=True), FakeRecorder(tmp_path))  # type: ignore[arg-type]
    from pytest_nvme_ai.measure.fio.runner import DirectIOUnsupported

    try:
        files = runner.model_files("opt-micro")
    except DirectIOUnsupported as exc:
        pytest.skip(str(exc))
    return runner, files


def test_every_loader_loads_the_micro_model_cold_and_verified(micro: tuple[ModelLoadRunner, Any]) -> None:
    runner, files = micro
    assert files.tensors == 36 and files.file_bytes == read_header(files.weights).file_bytes
    ran = []
    for loader in LOADERS:
        reason = loader_missing_reason(loader)
        if reason:
            print(f"skipped {loader}: {reason}")  # visible with -s; the other loaders still run
            continue
        rec = runner.recorder
        run = runner.measure(files, loader, rounds=1)
        (ld,) = run.loads
        assert ld.tensors_verified == files.tensors and ld.load_seconds > 0
        assert rec.recorded["load_bw"].samples == (ld.bw,)  # type: ignore[attr-defined]
        if loader == "from_pretrained":
            assert ld.new_tokens == 4 and ld.ttft_seconds is not None and ld.ttft_seconds > ld.load_seconds
        if run.facts.get("fio_missing") is None:
            assert run.fio[0] is not None and run.fio[0].bw_bytes > 0 and len(run.ratios) == 1
        ran.append(loader)
    assert {"safetensors", "from_pretrained"} <= set(ran)


def test_a_corrupted_model_file_fails_the_child_load_with_a_clear_message(micro: tuple[ModelLoadRunner, Any]) -> None:
    runner, files = micro
    victim = read_header(files.weights).tensors[5].name
    _flip_one_byte(files.weights, victim)

    with pytest.raises(ModelLoadError, match=rf"failed: VerifyError: safetensors: tensor '{victim}' differs"):
        runner.load(files, "safetensors")


def test_a_loader_whose_package_is_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastsafetensors" else real(name, *a))
    reason = loader_missing_reason("fastsafetensors")
    assert reason is not None and "fastsafetensors is not importable here: pip install fastsafetensors" in reason
