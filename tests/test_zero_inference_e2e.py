"""End to end (slow: real DeepSpeed runs of the tiny OPT and one of OPT-125m, ~2 min in all; select with `-k e2e`).

These run in CI: they are what proves that NVMe offload really streams parameters
from a file-backed target (DeepSpeed swap files appear under the nvme_path and the
child's read_bytes grow every loop), on the CPU accelerator the build machines have.
"""
from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.measure.deepspeed.ops import ensure_aio_op
from pytest_nvme_ai.core.targets import Target
from pytest_nvme_ai.measure.deepspeed.models import resolve_model
from pytest_nvme_ai.measure.zero_inference.runner import InferenceResult, ZeroInferenceRunner, inference_missing_reason
from pytest_nvme_ai.measure.zero_inference.spec import InferenceSpec
from test_zero_inference_runner import recorder

SUITE = Path(__file__).resolve().parents[1] / "suites" / "test_zero_inference.py"
SWAP_PATTERN = "zero_stage_3/*params/rank0/*.swp"
# pytester's subprocess runs with HOME set to its temp dir, where torch finds no cached build of the
# async_io op and would JIT-compile it again (minutes): point it at this session's cache instead
# (tests/conftest.py pins it to torch's default before any HOME change).
TORCH_EXTENSIONS_DIR = os.environ["TORCH_EXTENSIONS_DIR"]


@pytest.fixture(scope="module")
def e2e_ready() -> None:
    reason = inference_missing_reason() or ensure_aio_op()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def nvme_runs(tmp_path_factory: pytest.TempPathFactory, e2e_ready: None) -> dict[str, Any]:
    """One 16-bit and one 4-bit NVMe-offloaded run of the tiny model into a temporary target."""
    base = tmp_path_factory.mktemp("zi-e2e")
    (base / "target").mkdir()
    target = Target(path=base / "target", label="tmp", run_id="e2e")
    out: dict[str, Any] = {"target": target}
    for name, quant, loops in (("fp", None, 2), ("q4", 4, 1)):
        (base / name).mkdir()
        rec = recorder(base / name, timeout=600)
        spec = InferenceSpec(model="opt-tiny", batch_size=1, prompt_len=16, gen_len=4, offload="nvme",
                             quant_bits=quant, loops=loops, warmup=1)
        out[name] = (ZeroInferenceRunner(target, rec).run(spec), rec)
    return out


def test_e2e_nvme_run_reads_the_target(nvme_runs: dict[str, Any]) -> None:
    result, rec = nvme_runs["fp"]
    assert result.outcome == "ok", f"{result.error}\n{result.log_tail}"
    assert result.accelerator in ("cpu", "cuda")
    assert len(result.loops) == 2 and all(lp.new_tokens == 4 for lp in result.loops)
    assert all(lp.read_bytes > 0 for lp in result.loops)          # /proc/self/io counted the O_DIRECT reads
    assert result.decode_steps == 3 and (result.decode_read_bytes_per_step or 0) > 0
    assert rec.recorded["target_read_bytes"].n == 2 and rec.recorded["target_read_bytes"].value > 0
    assert rec.recorded["total_throughput"].n == 2
    assert rec.extra["run_outcome"] == "ok" and rec.extra["decode_steps"] == 3
    assert rec.params["offload"] == "nvme" and rec.params["model"] == "opt-tiny"


def test_e2e_swap_files_appeared_and_were_removed(nvme_runs: dict[str, Any]) -> None:
    result, _ = nvme_runs["fp"]
    paths = [f["path"] for f in result.swap_files]
    assert paths and all(fnmatch.fnmatch(p, SWAP_PATTERN) for p in paths), paths
    if result.accelerator == "cpu":
        assert all(p.startswith("zero_stage_3/bfloat16params/rank0/") for p in paths)
    target: Target = nvme_runs["target"]
    from pytest_nvme_ai.measure.zero_inference.pool import close_shared_pool

    close_shared_pool()  # what the session's end does: each engine's swap files go with its worker
    assert not list(target.workdir.rglob("*.swp"))


def test_e2e_saved_config_is_the_one_used(nvme_runs: dict[str, Any]) -> None:
    result, rec = nvme_runs["fp"]
    saved = json.loads(Path(rec.artifacts["ds_config"]).read_text())
    assert saved == result.ds_config
    off = saved["zero_optimization"]["offload_param"]
    assert off["device"] == "nvme" and off["buffer_size"] >= resolve_model("opt-tiny").largest_param_numel
    assert Path(off["nvme_path"]).is_relative_to(nvme_runs["target"].workdir)
    assert "intra_op_parallelism" in saved["aio"]  # DeepSpeed >= 0.16.4's key
    assert "loop 2/2" in Path(rec.artifacts["log"]).read_text()


def test_e2e_four_bit_weights_shrink_swap_and_reads(nvme_runs: dict[str, Any]) -> None:
    fp: InferenceResult = nvme_runs["fp"][0]
    q4: InferenceResult = nvme_runs["q4"][0]
    assert q4.outcome == "ok", f"{q4.error}\n{q4.log_tail}"
    assert "weight_quantization" in q4.ds_config
    swap = lambda r: sum(f["bytes"] for f in r.swap_files)  # noqa: E731
    assert swap(q4) < swap(fp) and q4.offloaded_bytes == swap(q4)
    # opt-tiny: only the embedding tables reach DeepSpeed's 1 MiB threshold; no decoder layer streams
    assert fp.residency and not any(fp.streaming_layers().values())
    assert 0.0 < (fp.offloaded_fraction or 0) < 1.0
    assert (q4.decode_read_bytes_per_step or 0) < (fp.decode_read_bytes_per_step or 0)


def test_e2e_quick_suite_through_pytest(pytester: pytest.Pytester, e2e_ready: None,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite module under the plugin: parametrized ids, records in results.json, the KV skip."""
    pytester.makepyfile(test_zero_inference=SUITE.read_text())
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", TORCH_EXTENSIONS_DIR)
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "-k", "nvme-q16 and bs1 and not vs",
                                      "--nvme-ai-profile", "quick")
    r.assert_outcomes(passed=1, skipped=1)
    r.stdout.fnmatch_lines(["*KV-cache offload needs CUDA*"])
    results = json.loads(next((pytester.path / "reports").glob("*/results.json")).read_text())
    # the target's id component may come first or last, depending on hook order
    by_id = {t["nodeid"].split("[", 1)[1].rstrip("]").replace("@default", "").strip("-"): t for t in results["tests"]}
    ok = by_id["opt-125m-bs1-nvme-q16"]
    assert ok["outcome"] == "passed" and ok["extra"]["run_outcome"] == "ok"
    assert ok["params"]["model"] == "opt-125m" and ok["params"]["offload"] == "nvme"
    assert ok["metrics"]["target_read_bytes"]["value"] > 0
    # every decoder layer streams, and the fraction offloaded is a param (another one is incomparable)
    assert ok["extra"]["streaming_layers"] and all(n > 0 for n in ok["extra"]["streaming_layers"].values())
    assert 0.9 < ok["params"]["offloaded_fraction"] <= 1.0 and ok["metrics"]["offloaded_bytes"]["value"] > 0
    # read amplification: each decode pass reads the swapped weights from the target (about once, here)
    assert ok["metrics"]["read_amplification"]["value"] > 0.1 and not ok["metrics"]["read_amplification"]["gated"]
    # the two bounds, measured in the same session (fio in the test, a no-offload reference run)
    for name in ("roofline_throughput", "read_bw_vs_fio", "accelerator_utilization", "overlap",
                 "prefill_roofline_throughput", "prefill_overlap"):
        assert name in ok["metrics"], name
    assert 0.0 <= ok["metrics"]["overlap"]["value"] <= 1.0
    assert ok["extra"]["roofline"]["decode"]["bound"] in ("io", "compute")
    assert ok["extra"]["compute_reference"]["outcome"] == "ok"
    assert {"log", "ds_config", "spec"} <= set(ok["artifacts"])
    skipped = by_id["opt-tiny-bs1-nvme-q16-kv"]
    assert skipped["outcome"] == "skipped" and skipped["extra"]["run_outcome"] == "not_applicable"


NO_FIO_CONFTEST = """
import pytest_nvme_ai.measure.fio.runner as fio_runner
import pytest_nvme_ai.run.environment as environment

# A GPU machine without fio: the suites' check and the header's version both see none; the rest of PATH stays.
fio_runner.find_fio = lambda: None
environment.fio_version = lambda: None
"""


def test_e2e_without_fio_t_io_comes_from_deepspeed_aio(pytester: pytest.Pytester, e2e_ready: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Where fio is absent, the bounds still get a measured t_io: DeepSpeed's aio read of the same target at the
    run's own aio settings. The sentence and a note say so, and the source is a param (not comparable with fio)."""
    pytester.makepyfile(test_zero_inference=SUITE.read_text())
    pytester.makeconftest(NO_FIO_CONFTEST)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", TORCH_EXTENSIONS_DIR)
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "-k", "nvme-q16 and bs1 and not vs and not kv",
                                      "--nvme-ai-profile", "quick")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["nvme-ai: profile quick*fio not found*"])
    data = json.loads(next((pytester.path / "reports").glob("*/results.json")).read_text())
    assert data["environment"]["versions"]["fio"] is None
    (t,) = data["tests"]
    roof = t["extra"]["roofline"]
    assert roof["bw_source"] == "deepspeed-aio" and roof["fio_bw"] > 0
    assert "aio read bandwidth" in roof["sentence"] and "fio is not installed" in roof["sentence"]
    assert t["params"]["t_io_bw_source"] == "deepspeed-aio"
    assert any("t_io uses DeepSpeed's aio read bandwidth" in n and "bs1M" in n for n in t["notes"]), t["notes"]
    assert 0.0 <= t["metrics"]["overlap"]["value"] <= 1.0 and t["metrics"]["read_bw_vs_fio"]["value"] > 0
    # the bandwidth is the aio read of the run's own settings: t_io = bytes per step / that bandwidth
    d = roof["decode"]
    assert abs(d["t_io"] - roof["decode_bytes_per_step"] / roof["fio_bw"]) <= 1e-9 + 1e-6 * d["t_io"]


def test_e2e_local_checkpoint_loads_real_weights(tmp_path: Path, e2e_ready: None) -> None:
    """A local directory with weights loads through from_pretrained(local_files_only) under ZeRO-3."""
    torch = pytest.importorskip("torch")
    from transformers import OPTForCausalLM

    from pytest_nvme_ai.measure.deepspeed.models import hf_config_object

    config = hf_config_object(resolve_model("opt-tiny"))
    config.num_hidden_layers = 2
    OPTForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp_path / "ckpt")
    assert resolve_model(str(tmp_path / "ckpt")).weights_dir is not None
    (tmp_path / "target").mkdir()
    (tmp_path / "art").mkdir()
    rec = recorder(tmp_path / "art", timeout=600)
    spec = InferenceSpec(model=str(tmp_path / "ckpt"), offload="cpu", prompt_len=8, gen_len=3, loops=1, warmup=0)
    result = ZeroInferenceRunner(Target(tmp_path / "target", "t", "e2e"), rec).run(spec)
    assert result.outcome == "ok", f"{result.error}\n{result.log_tail}"
    assert rec.params["model"] == "ckpt" and result.loops[0].new_tokens == 3
    assert "newly initialized" not in Path(rec.artifacts["log"]).read_text()  # every weight came from the file
