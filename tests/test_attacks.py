"""The third attack sweep's bad cases (issue 22, docs/reliability.md): nothing written outside the target,
no secret in any output, no baseline that switches the gate off.

Each test would fail on the code before the fix: fio read a newline in a target path as a new option and
`${HOME}` as the environment variable; `h=//dev` passed as a remote directory; a PostgreSQL password
reached results.json, the report and the history rows; a baseline of negative bandwidths was compared.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_nvme_ai.core.targets import TargetError, validate_target_dir
from pytest_nvme_ai.measure.fio import FioJob

# ---- 1/2: nothing fio reads differently from what we wrote -----------------------------------------
HOSTILE = {
    "newline": "a\nfilename=VICTIM\n;",
    "carriage return": "a\rb",
    "env var": "d${HOME}",
    "keyword": "d$ncpus",
    "semicolon": "a;b",
    "hash": "a #b",
    "tab": "a\tb",
}


def _tree(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, tuple[int, float]]:
    """Every file under root (but the skipped dirs) with its size and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for f in filenames:
            p = Path(dirpath, f)
            st = p.lstat()
            if p.parent == root and f in ("stdout", "stderr"):
                continue   # pytester's own capture of the subprocess
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime)
    return out


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_fio_job_refuses_a_filename_fio_would_read_otherwise(kind: str, tmp_path: Path) -> None:
    name = HOSTILE[kind].replace("VICTIM", str(tmp_path / "victim.txt"))
    with pytest.raises(ValueError, match="fio would read another path"):
        FioJob(name="x", bs="1M", iodepth=1, size="4M", filename=f"{tmp_path}/{name}/data.bin")


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_target_path_fio_would_read_otherwise_is_refused_at_configure(kind: str, tmp_path: Path) -> None:
    d = tmp_path / HOSTILE[kind].replace("VICTIM", str(tmp_path / "victim.txt")).replace("/", "_")
    d.mkdir()
    with pytest.raises(TargetError) as exc:
        validate_target_dir(d)
    msg = str(exc.value)
    assert "Rename the directory" in msg and "could write outside the target" in msg


def test_a_symlink_to_a_hostile_path_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "d${HOME}"
    real.mkdir()
    (tmp_path / "nice").symlink_to(real)
    with pytest.raises(TargetError, match=r"'\$'"):
        validate_target_dir(tmp_path / "nice")


@pytest.mark.parametrize("spec", ["h=//dev", "h=//dev/nvme0n1", "h=///dev/sda", "h=/mnt/x\n",
                                  "h=/mnt/x\nfilename=/etc/passwd", "h\n=/mnt/x", "h=/mnt/${HOME}", "h=/mnt/a;b",
                                  "h=/mnt/a#b", "h=/mnt/a b", "h=/", "h=//"])
def test_fio_client_spec_attacks_are_refused(spec: str) -> None:
    from pytest_nvme_ai.run.settings.qual import fio_client

    with pytest.raises(ValueError):
        fio_client(spec)


def test_remote_job_file_names_only_paths_in_the_private_dir() -> None:
    from pytest_nvme_ai.measure.fio.remote import parse_remote, remote_jobfile

    remote = parse_remote("storage01,9000=//mnt//nvme0/")
    assert remote.directory == "/mnt/nvme0"
    text = remote_jobfile(remote, "r1", FioJob(name="seq", bs="1M", iodepth=4, size="8M"), 8 << 20, 2)
    private = "/mnt/nvme0/.nvme-ai-r1"
    paths = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(("filename=", "arguments="))]
    assert paths and all(p.startswith(private) for p in paths)


def test_concurrent_job_file_refuses_a_hostile_filename() -> None:
    from pytest_nvme_ai.measure.fio.multi import concurrent_jobfile

    ok = FioJob(name="t-a", bs="1M", iodepth=1, size="4M", filename="/mnt/a/.nvme-ai-r/f.bin")
    assert "filename=/mnt/a/.nvme-ai-r/f.bin" in concurrent_jobfile([ok, ok])
    bad = replace(ok)   # changed around the constructor's check, as a future caller might
    object.__setattr__(bad, "filename", "/mnt/b\nfilename=/etc/passwd")
    with pytest.raises(ValueError, match="line break"):
        concurrent_jobfile([ok, bad])


def test_hostile_target_is_refused_before_anything_is_written(pytester: pytest.Pytester) -> None:
    """The issue's attack, whole: the target's newline would have given fio a second filename= (the victim)."""
    victim = pytester.path / "victim.txt"
    victim.write_text("canary: never overwritten")
    target = pytester.path / "inj" / f"a\nfilename={victim}\n;" / "b"
    target.mkdir(parents=True)
    dollar = pytester.mkdir("d${HOME}")
    pytester.makepyfile(test_f="""
from pytest_nvme_ai.measure.fio import FioJob

def test_read(fio, offload_target):
    fio.run(FioJob(name="seq", bs="1M", iodepth=4, size="8M", runtime=1), repeat=1)
""")
    before = _tree(pytester.path)
    for t in (target, dollar):
        r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nvme-ai-target", str(t))
        assert r.ret == pytest.ExitCode.USAGE_ERROR
        assert "Rename the directory" in r.stderr.str()
    assert victim.read_text() == "canary: never overwritten"
    after = _tree(pytester.path, skip=(pytester.path / "reports",))
    assert {k: v for k, v in after.items() if not k.startswith("reports")} == before
    assert list(dollar.iterdir()) == [] and not (pytester.path / "d").exists()   # fio made d/root/ before


def test_real_fio_on_an_odd_but_accepted_path_opens_nothing_outside(pytester: pytest.Pytester) -> None:
    """Spaces, '=', '%', quotes, brackets, ',', '\\' and ':' are kept as written: fio reads them literally
    (':' escaped as fio documents) and writes only in the private directory."""
    if subprocess.run(["which", "fio"], capture_output=True).returncode != 0:
        pytest.skip("fio not installed: apt-get install fio")
    outside = pytester.path / "drive"
    outside.mkdir()
    canary = outside / "canary.bin"
    canary.write_bytes(b"c" * 4096)
    target = outside / "d r=i%v'e\"[x],y\\z:w"
    target.mkdir()
    pytester.makepyfile(test_f="""
import os
from pytest_nvme_ai.measure.fio import FioJob

def test_read(fio, offload_target):
    res = fio.run(FioJob(name="seq", bs="1M", iodepth=4, size="8M", runtime=1, direct=False), repeat=1)
    assert res.io_bytes > 0
    opened = sorted(os.listdir(offload_target.workdir))
    assert opened == ["fio-data-8M.bin"] or opened == [".session.lock", "fio-data-8M.bin"], opened
""")
    before = _tree(pytester.path)
    r = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nvme-ai-target", str(target))
    r.assert_outcomes(passed=1)
    assert canary.read_bytes() == b"c" * 4096
    after = _tree(pytester.path, skip=(pytester.path / "reports",))
    new = sorted(set(after) - set(before) - {k for k in after if k.startswith("reports")})
    assert new == [], f"files appeared outside the private directory: {new}"
    assert list(target.iterdir()) == []   # the private directory is gone too


# ---- 5: a baseline value no measurement can give is corruption ----------------------------------------
def _baseline(tmp_path: Path, metrics: dict[str, tuple[str, str, list[float]]]) -> Path:
    from pytest_nvme_ai.core.metrics import Metric
    from pytest_nvme_ai.gate.baseline import NewSession, save_sessions

    ms = {n: Metric(n, unit, better, tuple(xs)) for n, (unit, better, xs) in metrics.items()}  # type: ignore[arg-type]
    path = tmp_path / "b.json"
    save_sessions(path, name="b", fingerprint={"kind": "virtio"},
                  sessions=[NewSession("k", "t.py::t", {}, ms)], run={"id": "r1", "started": "2026-12-01T00:00:00"})
    return path


def _edit(path: Path, metric: str, samples: list[float]) -> None:
    raw = json.loads(path.read_text())
    m = raw["entries"]["k"]["sessions"][0]["metrics"][metric]
    m["samples"], m["value"] = samples, samples[0]
    path.write_text(json.dumps(raw))


@pytest.mark.parametrize("metric,unit,better,bad", [
    ("bw", "B/s", "higher", [-500e6, -500e6, -500e6]),
    ("clat_p99", "ns", "lower", [100.0, -1.0, 100.0]),
    ("peak_rss", "B", "lower", [-1.0]),
    ("decode_latency", "s", "lower", [-0.5]),
    ("decode_throughput", "tokens/s", "higher", [-3.0]),
    ("aio_vs_fio", "ratio", "higher", [-0.2]),
    ("overlap", "ratio", "higher", [1.5]),
    ("bandwidth_sensitivity", "ratio", "higher", [-1.5]),
    ("my_custom_bw", "B/s", "higher", [-1.0]),
])
def test_baseline_sample_outside_the_metric_domain_is_corrupt(tmp_path: Path, metric: str, unit: str,
                                                             better: str, bad: list[float]) -> None:
    from pytest_nvme_ai.gate.baseline import BaselineError, load

    path = _baseline(tmp_path, {metric: (unit, better, [1.0] if metric == "overlap" else [0.5])})
    assert load(path) is not None
    _edit(path, metric, bad)
    with pytest.raises(BaselineError) as exc:
        load(path)
    msg = str(exc.value)
    assert msg.startswith(f"baseline file {path} is corrupt (") and "Nothing was overwritten" in msg
    lowest = -1.0 if metric == "bandwidth_sensitivity" else 0.0
    shown = next(x for x in bad if x < lowest or (metric == "overlap" and x > 1))
    assert repr(metric) in msg and f"sample {shown:g} {unit}" in msg


@pytest.mark.parametrize("metric,unit,value", [("bandwidth_sensitivity", "ratio", -0.3), ("loss", "loss", -2.0),
                                               ("my_delta", "widgets", -7.0)])
def test_metrics_that_may_be_negative_stay_readable(tmp_path: Path, metric: str, unit: str, value: float) -> None:
    from pytest_nvme_ai.gate.baseline import load

    path = _baseline(tmp_path, {metric: (unit, "higher", [value, value])})
    bf = load(path)
    assert bf is not None and bf.entries["k"].latest.metrics[metric].samples == (value, value)


def test_saving_into_a_read_only_mode_baseline_keeps_its_mode(tmp_path: Path) -> None:
    from pytest_nvme_ai.core.metrics import Metric
    from pytest_nvme_ai.gate.baseline import NewSession, save_sessions

    path = _baseline(tmp_path, {"bw": ("B/s", "higher", [1.0, 2.0])})
    path.chmod(0o444)
    save_sessions(path, name="b", fingerprint={"kind": "virtio"},
                  sessions=[NewSession("k", "t.py::t", {}, {"bw": Metric.of("bw", [3.0])})],
                  run={"id": "r2", "started": "2026-12-02T00:00:00"})
    assert oct(path.stat().st_mode & 0o777) == oct(0o444)
    assert len(json.loads(path.read_text())["entries"]["k"]["sessions"]) == 2
