"""The HTML report: content from a golden results.json, escaping, robustness, size, compare page, CLI."""
from __future__ import annotations

import copy
import json
import random
import re
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_nvme_ai.core.schema import SCHEMA_VERSION
from pytest_nvme_ai.cli import main as cli_main
from pytest_nvme_ai.report import render_compare, render_run
from pytest_nvme_ai.report.drives import downtrained
from pytest_nvme_ai.core.text import size_or_none
from pytest_nvme_ai.report.fmt import fmt_size

GOLDEN = Path(__file__).parent / "golden" / "results_full.json"
HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "<i>not italic</i>", "<b>log</b>")
SIZE_LIMIT = 3 * 1024 * 1024   # "under a few MB" for a full-profile run, with room for growth


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def page(golden: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    run_dir = tmp_path_factory.mktemp("run")
    (run_dir / "artifacts" / "seq_read_2").mkdir(parents=True)
    (run_dir / "artifacts" / "seq_read_2" / "seqread-1.fio").write_text("[seqread]\nrw=read\n")
    out = run_dir / "index.html"
    render_run(golden, out, run_dir=run_dir)
    return out.read_text(encoding="utf-8")


class Tags(HTMLParser):
    """Every start tag and its attributes, as a browser's tokenizer sees them (attribute values unescaped)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def text_of(html: str) -> str:
    """Visible text, roughly: tags dropped, whitespace collapsed (entities kept as written)."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def count_badge(html: str, status: str) -> int:
    m = re.search(rf'<div class="count v-{status}[^"]*"><b>(\d+)</b>', html)
    assert m, f"no {status} count on the page"
    return int(m.group(1))


# ---- golden run page ----------------------------------------------------------------------------
def test_counts_cover_every_kind_of_result(page: str) -> None:
    expected = {"regression": 2, "error": 2, "incomparable": 1, "improvement": 1, "new": 1, "pass": 22,
                "skipped": 1, "unmeasured": 1}
    assert {s: count_badge(page, s) for s in expected} == expected
    assert ">REGRESSION<" in page.replace("\n", "")


def test_regressions_listed_first_with_deltas(page: str) -> None:
    attention = page[page.index("Needs attention"):page.index('id="drives"')]
    verdicts = re.findall(r'<tr><td class="v-(\w+)">', attention)
    assert verdicts[:3] == ["regression"] * 3, verdicts
    assert verdicts == sorted(verdicts, key=["regression", "error", "incomparable", "improvement"].index)
    # worst delta first: ZI decode throughput -30%, then total -26%, then fio bw -18%
    deltas = re.findall(r"([+-]\d+\.\d)%</td>", attention)
    assert deltas[:3] == ["-30.0", "-26.0", "-18.0"]
    assert "3.97 GB/s" in attention and "3.25 GB/s" in attention   # fio 1M QD16: baseline and now
    assert "outcome timeout: killed after 14400 s" in attention    # a run that never finished, with its cause


def test_drive_identity_link_and_smart(page: str) -> None:
    text = text_of(page)
    for fact in ("Samsung SSD 990 PRO 2TB", "S6Z2NJ0W123456X", "4B2QJXD7", "2 TB", "ext4", "/mnt/nvme0"):
        assert fact in text
    # downtrained link is flagged, with both current and max
    assert "PCIe link trained below its maximum" in text
    assert "Gen3 x4 (8 GT/s) — below maximum" in text
    assert "Gen4 x4 (16 GT/s)" in text
    assert "nvme0n1p1 (259:1)" in text and "Controller nvme0" in text
    assert '<td class="flag">⚠ Gen3 x4' in page
    # SMART: temperature rise and throttling time (warning_temp_time delta) flagged
    assert re.search(r"Temperature</td><td class=\"num\">38 °C</td><td class=\"num\">71 °C</td>"
                     r"<td class=\"num \">\+33 °C", page)
    assert re.search(r"Thermal throttling time</td>.*?<td class=\"num flag\">\+3 min</td>", page)
    assert "+1.79 TB" in text    # data read during the run


def test_non_nvme_target_is_shown_as_what_it_is(page: str) -> None:
    text = text_of(page)
    assert "@vda — virtio virtual disk" in text
    assert "Not an NVMe drive" in text
    assert "SMART unavailable: not an NVMe device (virtio)" in text
    assert "Controller" not in text[text.index("@vda — virtio"):]   # absent fields are left out, not dashed
    assert "not a PCIe device" in text


def test_environment_and_versions(page: str) -> None:
    text = text_of(page)
    for fact in ("Linux 6.1.0-27-amd64", "AMD EPYC 9354 32-Core Processor (64 cores) x86_64", "503 GiB",
                 "NVIDIA A6000, 49140 MiB, driver 550.54.15", "fio 3.33", "DeepSpeed 0.19.8", "torch 2.13.0",
                 "transformers not installed"):
        assert fact in text, fact


def test_fio_section_chart_table_and_latency(page: str) -> None:
    sec = page[page.index('id="seq_read"'):page.index('id="aio_read"')]
    assert sec.count("<svg") == 2                        # bandwidth vs block size, latency percentiles
    assert "Read bandwidth vs block size @nvme0" in sec   # chart text is real, searchable <text>
    assert "QD16 × 1 job(s) libaio" in sec
    assert "14.4k IO/s" in sec and "617 µs" in sec and "81.5 ms" in sec
    assert ('<a href="artifacts/seq_read_2/seqread-1.fio" title="artifacts/seq_read_2/seqread-1.fio">'
            'fio job file</a>') in sec
    assert ('<a href="artifacts/seq_read_2/seqread-1.json" class="missing" '
            'title="artifacts/seq_read_2/seqread-1.json (not found') in sec


def test_aio_section_with_tuned_settings(page: str) -> None:
    sec = page[page.index('id="aio_read"'):page.index('id="zero_inference"')]
    assert sec.count("<svg") == 1 and "fio, same file" in sec
    assert "Tuned aio settings (@nvme0)" in sec and sec.count("Tuned aio settings") == 1
    text = text_of(sec)
    assert "block_size 8M" in text and "overlap_events true" in text
    assert "bandwidth, default settings 2.61 GB/s" in text and "gain from tuning +16.9%" in text
    assert "fio reference bandwidth on the same file: 3.25 GB/s." in text


def test_zero_inference_section(page: str) -> None:
    sec = page[page.index('id="zero_inference"'):]
    text = text_of(sec)
    # CPU vs NVMe side by side per model, with the ratio and where NVMe catches up
    assert "CPU offload ends in OOM at batch 32 while NVMe offload still runs (31.96 tok/s)" in text
    assert "NVMe offload matches or beats CPU offload from batch 32 (×1.29)" in text
    assert "×0.45" in text and "×0.70" in text
    # the pairing test's CPU side is unfolded next to the single NVMe runs
    assert "1 cpu (pair) ok 907 ms 16.47 s 563.2 1.965 1.913" in text
    # OOM and timeout are data: in the chart (as text in the SVG) and in both tables
    assert "cpu: OOM" in sec and "nvme: TIMEOUT" in sec
    assert sec.count(">OOM<") >= 2 and sec.count(">TIMEOUT<") >= 2
    # prefill/decode breakdown chart, peak memory and I/O columns
    assert "Latency breakdown per run" in sec and "prefill" in sec and "decode" in sec
    for header in ("peak GPU mem", "peak RSS", "read from target", "roofline tok/s", "accel. util.", "offloaded share"):
        assert header in sec
    assert "the skipped run" not in text and "SKIPPED" in text


def test_metric_rows_show_baseline_now_delta_verdict(page: str) -> None:
    m = re.search(r'<tr title="bw REGRESSION[^"]*"><td>bw</td><td class="num">3.25 GB/s</td>.*?</tr>', page)
    assert m, "no bw metric row for the 1M QD16 regression"
    row = m.group(0)
    assert "3.97 GB/s" in row and "-18.0%" in row and "±10%" in row   # tolerance is a percentage (10.0)
    assert 'class="v-regression">regression</td>' in row
    assert 'class="num v-regression">-18.0%' in row   # the delta that decided it is coloured
    assert "Mann-Whitney U p=0.05" in row
    # a passing delta is not coloured: one red cell must stand out
    assert re.search(r'<td class="num ">[+-]\d\.\d%</td><td class="num muted">±10%</td><td class="v-pass">', page)


def test_hostile_strings_are_escaped_everywhere(page: str) -> None:
    for raw in HOSTILE:
        assert raw not in page, f"raw hostile string in page: {raw}"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page          # test id, model name (HTML and SVG)
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page     # param value, nodeid
    assert "&lt;i&gt;not italic&lt;/i&gt;" in page                  # a note
    tags = Tags(page).tags
    assert not [t for t, _ in tags if t in ("script", "img", "iframe", "object", "embed", "link", "i")]
    assert not [(t, a) for t, attrs in tags for a in attrs if a.startswith("on")]
    # an artifact path can only be a relative link (to a file named "javascript:..."), never a javascript: URL
    assert not re.search(r'href="\s*javascript:', page, re.I)
    assert 'href="javascript%3Aalert%281%29"' in page


def test_page_is_self_contained(page: str) -> None:
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    fetching = {"src", "srcset", "poster", "data", "background", "action", "formaction"}
    assert not [(t, a) for t, attrs in Tags(page).tags for a in attrs if a in fetching]
    external = ("http:", "https:", "//", "javascript:")
    assert not [t for t, attrs in Tags(page).tags if t == "link" or (t == "a" and (attrs.get("href") or "").startswith(
        external))]
    assert "@import" not in page and "url(http" not in page
    assert "<!DOCTYPE svg" not in page and "<?xml" not in page
    # Only namespace names may look like URLs; they are never fetched.
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "duplicate element ids"


def test_render_is_deterministic(golden: dict[str, Any], tmp_path: Path) -> None:
    render_run(golden, tmp_path / "a.html", run_dir=tmp_path)
    render_run(golden, tmp_path / "b.html", run_dir=tmp_path)
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # atomic write left no temp file


# ---- robustness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [
    {"schema_version": 1},
    {"schema_version": 1, "run": None, "environment": None, "targets": None, "tests": None},
    {"schema_version": 1, "tests": [{}], "targets": [{}]},
    {"schema_version": 1, "tests": [
        {"nodeid": "a", "suite": "seq_read", "params": {"bs": None, "iodepth": "x"}, "metrics": {"bw": {}}},
        {"nodeid": "b", "suite": "seq_read", "params": {"bs": 4096}, "metrics": {"bw": {"value": "fast"}}},
        {"nodeid": "c", "suite": "aio_read", "params": {"block_size": "weird"}, "extra": {"tuned_aio": "no"}},
        {"nodeid": "d", "suite": "zero_inference", "params": {"batch_size": None, "model": None},
         "extra": {"run_outcome": "timeout"}, "outcome": "failed"},
        {"nodeid": "e", "suite": "zero_inference", "params": {"batch_size": 4, "offload": "nvme"},
         "metrics": {"total_throughput": {"value": 2.0, "unit": "tokens/s", "samples": [2.0]}},
         "baseline": {"metrics": {"total_throughput": {"verdict": "pass", "delta": None}}}, "verdict": "pass"},
        {"nodeid": "f", "suite": "zero_inference", "params": {"batch_size": 4, "offload": "cpu"},
         "extra": {"run_outcome": "oom"}, "outcome": "failed", "verdict": "error"},
    ], "targets": [{"device": {"kind": "nvme", "pcie": {"current_gen": 3, "max_gen": 4}, "smart_before": None}}]},
], ids=["minimal", "nulls", "empty-records", "odd-values"])
def test_any_valid_results_render(data: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "index.html"
    render_run(data, out)
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "</html>" in html
    assert "chart could not be drawn" not in html


def test_skipped_zero_inference_test_is_labelled_from_its_case(tmp_path: Path) -> None:
    """A test that skips before recording params still says what it would have run (from the `case` param)."""
    data = {"schema_version": 1, "tests": [{
        "nodeid": "suites/test_zero_inference.py::test_zero_inference[@default-opt-tiny-bs1-nvme-q16-kv]",
        "suite": "zero_inference", "outcome": "skipped", "verdict": None,
        "params": {"case": {"model": "opt-tiny", "batch_size": 1, "offload": "nvme", "kv_offload": True,
                            "prompt_len": 32, "gen_len": 8}},
        "extra": {"run_outcome": "not_applicable"}, "metrics": {}}]}
    out = tmp_path / "index.html"
    render_run(data, out)
    text = text_of(out.read_text(encoding="utf-8"))
    assert "opt-tiny · KV offload · prompt 32 / gen 8 1 NOT APPLICABLE" in text
    assert "model ?" not in text and "None" not in text


def test_helpers() -> None:
    assert size_or_none("1M") == 1 << 20 and size_or_none("128k") == 128 << 10 and size_or_none(4096) == 4096
    assert size_or_none("16MiB") == 16 << 20 and size_or_none("weird") is None and size_or_none(None) is None
    assert fmt_size(8 << 20) == "8M" and fmt_size(4096) == "4K" and fmt_size(1000) == "1000"
    assert downtrained({"current_gen": 3, "max_gen": 4}) and downtrained({"current_width": 2, "max_width": 4})
    assert not downtrained({"current_gen": 4, "max_gen": 4, "current_width": 4, "max_width": 4})
    assert not downtrained({"current_gen": 3, "max_gen": 4, "downtrained": False})   # the recorder's word wins


# ---- size of a full-profile page ----------------------------------------------------------------
def synthetic_full_profile(samples: int = 5) -> dict[str, Any]:
    """4 bs x 3 qd x 2 numjobs fio + 80 aio + 3 models x 4 batches x (NVMe test + CPU/NVMe pairing test) ZI,
    every metric with samples and a baseline comparison."""
    rng = random.Random(7)
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    units = {"bw": "B/s", "iops": "IO/s", "read_latency": "s", "aio_vs_fio": "ratio"}

    def metric(name: str, value: float, unit: str) -> dict[str, Any]:
        xs = [value * (1 + rng.uniform(-0.05, 0.05)) for _ in range(samples)]
        better = "lower" if unit in ("s", "ns", "B") else "higher"
        return {"value": sorted(xs)[len(xs) // 2], "unit": unit, "better": better, "samples": xs, "gated": True}

    def record(nodeid: str, suite: str, params: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
        comps = {n: {"metric": n, "unit": m["unit"], "better": m["better"], "baseline": m["value"] * 1.02,
                     "now": m["value"], "delta": -0.0196, "tolerance": 10.0, "verdict": "pass", "p_value": 0.3,
                     "method": "mannwhitneyu", "gated": True, "message": "", "n_baseline": 5, "n_now": samples}
                 for n, m in metrics.items()}
        return {"nodeid": nodeid + "-@nvme0]", "key": nodeid + "]", "suite": suite, "params": params,
                "target": "/mnt/nvme0", "target_label": "nvme0", "outcome": "passed", "longrepr": None,
                "duration": 61.0, "metrics": metrics, "baseline": {"file": "b.json", "metrics": comps},
                "verdict": "pass", "tolerance": 10.0, "extra": {"run_outcome": "ok", "fio_bw": 3.2e9},
                "artifacts": {"log": f"artifacts/{abs(hash(nodeid)) % 10**8}/log.txt",
                              "fio job": "artifacts/x/job.fio"}, "notes": []}

    tests = []
    for bs in ("128k", "512k", "1M", "4M"):
        for qd in (1, 16, 64):
            for nj in (1, 4):
                bw = 3.2e9 * rng.uniform(0.3, 1.0)
                ms = {"bw": metric("bw", bw, "B/s"), "iops": metric("iops", bw / size_or_none(bs), "IO/s")}  # type: ignore[operator]
                ms.update({p: metric(p, 1e5 * k, "ns")
                           for p, k in (("clat_p50", 1), ("clat_p99", 3), ("clat_p999", 9))})
                tests.append(record(f"suites/test_seq_read.py::test_seq_read[{bs}-qd{qd}-j{nj}", "seq_read",
                                    {"bs": bs, "iodepth": qd, "numjobs": nj, "ioengine": "libaio"}, ms))
    for bs in ("128k", "1M", "4M", "8M", "16M"):
        for qd in (8, 32, 64, 128):
            for par in (1, 2, 4, 8):
                bw = 3.0e9 * rng.uniform(0.4, 1.05)
                tests.append(record(f"suites/test_aio_read.py::test_aio_read[{bs}-qd{qd}-p{par}", "aio_read",
                                    {"block_size": size_or_none(bs), "queue_depth": qd, "parallelism": par},
                                    {n: metric(n, v, units[n]) for n, v in
                                     (("bw", bw), ("read_latency", 0.4), ("aio_vs_fio", bw / 3.2e9))}))
    zi = {"prefill_latency": "s", "decode_latency": "s", "total_latency": "s", "prefill_throughput": "tokens/s",
          "decode_throughput": "tokens/s", "total_throughput": "tokens/s", "peak_gpu_mem": "B", "peak_rss": "B",
          "target_read_bytes": "B", "target_read_bw": "B/s", "read_bw_vs_fio": "ratio",
          "roofline_throughput": "tokens/s", "accelerator_utilization": "ratio", "overlap": "ratio",
          "offloaded_bytes": "B", "nvme_vs_cpu_throughput": "ratio"}
    for model in ("opt-13b", "opt-30b", "opt-66b"):
        for b in (32, 80, 128, 140):
            # The suite's shape: a single NVMe-offload test, and a pairing test holding a cpu_ and an nvme_ run.
            for off, prefixes in (("nvme", ("",)), ("cpu|nvme", ("cpu_", "nvme_"))):
                params = {"model": model, "batch_size": b, "offload": off, "quant_bits": 4, "kv_offload": True,
                          "prompt_len": 512, "gen_len": 32, "dtype": "float16", "accelerator": "cuda"}
                ms = {pre + n: metric(pre + n, rng.uniform(0.5, 50.0), u) for pre in prefixes for n, u in zi.items()
                      if pre or n != "nvme_vs_cpu_throughput"}
                if len(prefixes) == 2:
                    ms["nvme_vs_cpu_throughput"] = metric("nvme_vs_cpu_throughput", rng.uniform(0.3, 1.2), "ratio")
                test = "test_nvme_vs_cpu" if len(prefixes) == 2 else "test_zero_inference"
                tests.append(record(f"suites/test_zero_inference.py::{test}[{model}-bs{b}-{off}", "zero_inference",
                                    params, ms))
    data["tests"] = tests
    data["targets"] = data["targets"][:1]
    return data


def test_full_profile_page_stays_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = synthetic_full_profile()
    assert len(data["tests"]) == 24 + 80 + 24
    out = tmp_path / "index.html"
    start = time.perf_counter()
    render_run(data, out, run_dir=tmp_path)
    seconds = time.perf_counter() - start
    size = out.stat().st_size
    results_size = len(json.dumps(data, indent=2))
    with capsys.disabled():
        sys.stdout.write(f"\n[full-profile report] {len(data['tests'])} tests: page {size / 1024:.0f} KiB "
                         f"(results.json {results_size / 1024:.0f} KiB), rendered in {seconds:.1f} s\n")
    assert size < SIZE_LIMIT, f"page is {size} bytes for a full-profile run (limit {SIZE_LIMIT})"
    assert out.read_text(encoding="utf-8").count("<details class=\"test\"") == 128


# ---- compare page --------------------------------------------------------------------------------
def slower(data: dict[str, Any], factor: float, firmware: str) -> dict[str, Any]:
    new = copy.deepcopy(data)
    new["run"]["id"] = "20261127-090000-d4e5f6"
    new["targets"][0]["device"]["firmware"] = firmware
    new["targets"][0]["device"]["pcie"].update(current_gen=4, current_speed=16.0, downtrained=False)
    for t in new["tests"]:
        m = t["metrics"].get("bw")
        if m and t["suite"] == "seq_read":
            m["value"] *= factor
            m["samples"] = [x * factor for x in m["samples"]]
    new["tests"] = [t for t in new["tests"] if t["suite"] != "custom_probe"]   # only in A
    return new


def test_compare_page(golden: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "compare.html"
    render_compare(golden, slower(golden, 0.8, "5B2QJXD7"), out, labels=("before", "after <fw>"))
    html = out.read_text(encoding="utf-8")
    assert "after <fw>" not in html and "after &lt;fw&gt;" in html
    assert "<b>A</b> = before &nbsp; <b>B</b> = after &lt;fw&gt;" in html
    # both drives side by side, the differing fields highlighted
    assert re.search(r'<td class="b">Firmware</td><td class="b">4B2QJXD7</td><td class="b">5B2QJXD7</td>', html)
    assert re.search(r'PCIe link \(current\)</td><td class="flag b">⚠ Gen3 x4.*?</td><td class="b">Gen4 x4 \(16 GT/s\)',
                     html)
    # tests matched by key + params: 30 in both, the custom probe only in A
    assert re.search(r"<b>30</b><span>matched</span>", html)
    assert re.search(r"<b>1</b><span>only in before</span>", html)
    # seq_read bw 20% lower: ratio and "worse" per test, 7 measured fio tests with bw in both runs
    assert re.search(r"<b>7</b><span>metrics worse</span>", html)
    assert re.search(r'<td class="v-regression grp num">×0.80</td><td class="v-regression grp">worse</td>', html)
    assert "B / A" in html and html.count("<svg") >= 3
    for raw in HOSTILE[:2]:
        assert raw not in html


# ---- CLI -------------------------------------------------------------------------------------------
def write_results(dir_: Path, data: Any) -> Path:
    dir_.mkdir(parents=True, exist_ok=True)
    p = dir_ / "results.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return p


def test_cli_report_from_run_dir_and_output(golden: dict[str, Any], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "reports" / "run1"
    write_results(run, golden)
    assert cli_main(["report", str(run)]) == 0
    assert (run / "index.html").is_file()
    other = tmp_path / "mail" / "report.html"
    assert cli_main(["report", str(run / "results.json"), "-o", str(other)]) == 0
    html = other.read_text(encoding="utf-8")
    # artifact links still point at the run's files, relative to where the page was written
    assert 'href="../reports/run1/artifacts/seq_read_2/seqread-1.fio"' in html
    assert str(other) in capsys.readouterr().out


@pytest.mark.parametrize("case, content, message", [
    ("missing", None, "not found: pass the results.json of a run"),
    ("not-json", "{not json", "is not valid JSON"),
    ("newer-schema", {"schema_version": SCHEMA_VERSION + 1, "tests": []}, "upgrade pytest-nvme-ai"),
    ("no-schema", {"tests": []}, "no integer schema_version"),
    ("not-object", [1, 2], "expected a JSON object"),
])
def test_cli_report_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, content: Any,
                           message: str) -> None:
    run = tmp_path / case
    path = run / "results.json" if content is None else write_results(run, content)
    assert cli_main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nvme-ai report: error: ") and message in err, err
    assert not (run / "index.html").exists()


def test_cli_compare(golden: dict[str, Any], tmp_path: Path) -> None:
    a = write_results(tmp_path / "a", golden)
    b = write_results(tmp_path / "b", slower(golden, 0.5, "X"))
    out = tmp_path / "cmp.html"
    assert cli_main(["compare", str(a.parent), str(b), "--labels", "gen4", "gen3", "-o", str(out)]) == 0
    assert "gen4" in out.read_text(encoding="utf-8")
    newer = write_results(tmp_path / "c", {"schema_version": SCHEMA_VERSION + 1})
    assert cli_main(["compare", str(a), str(newer), "-o", str(out)]) == 2


def test_two_runs_of_one_case_render(golden: dict[str, Any], tmp_path: Path) -> None:
    """A user test repeating a suite case gives two runs with the same model and batch: still a page."""
    data = copy.deepcopy(golden)
    zi = [t for t in data["tests"] if t.get("suite") == "zero_inference" and t.get("metrics")]
    assert zi, "the golden file has ZeRO-Inference results"
    twin = copy.deepcopy(zi[0])
    twin["nodeid"] += "-again"
    data["tests"].append(twin)
    out = tmp_path / "index.html"
    render_run(data, out)
    assert twin["nodeid"].split("::")[-1].split("[")[0] in out.read_text(encoding="utf-8")
