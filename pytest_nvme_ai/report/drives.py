"""Drive identity, PCIe link, SMART and environment, as rows of (field, value).

Rows are plain (name, text, css) triples so the compare page can zip two runs
field by field and highlight what differs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pytest_nvme_ai.report.fmt import as_list, as_map, fmt_bytes, num

# What each device kind is, said plainly: a page about a virtio disk must not read like an SSD qualification.
KIND_TEXT = {
    "nvme": ("NVMe SSD", ""),
    "virtio": ("virtio virtual disk", "Not an NVMe drive: figures describe the hypervisor's virtual disk and its "
                                      "host storage, not a qualified SSD."),
    "disk": ("SATA/SAS/SCSI disk", "Not an NVMe drive: figures describe a non-NVMe block device."),
    "virtual": ("virtual / memory-backed filesystem", "No physical drive behind this target (e.g. tmpfs, overlay): "
                                                      "figures describe memory or a layered filesystem, not an SSD."),
}
VERSION_NAMES = (("python", "Python"), ("fio", "fio"), ("deepspeed", "DeepSpeed"), ("torch", "torch"),
                 ("transformers", "transformers"), ("accelerate", "accelerate"), ("pytest", "pytest"),
                 ("pytest-benchmark", "pytest-benchmark"), ("numpy", "numpy"))

Row = tuple[str, str, str]   # field, value, css class


@dataclass
class DriveView:
    label: str
    path: str
    embedded: bool
    headline: str
    kind: str
    kind_note: str
    is_nvme: bool
    link_flag: str
    rows: list[Row]
    smart_rows: list[tuple[str, str, str, str, str]]   # field, before, after, change, css
    smart_note: str


def _s(v: Any, default: str = "—") -> str:
    return default if v is None or v == "" else str(v)


def kind_of(dev: Mapping[str, Any]) -> tuple[str, str]:
    kind = str(dev.get("kind") or "unknown")
    if kind == "disk" and dev.get("rotational"):
        return "rotational disk (HDD)", "Not an NVMe drive: a spinning disk."
    text, note = KIND_TEXT.get(kind, (f"{kind} device", f"Device kind '{kind}': not identified as an NVMe drive."))
    if kind == "virtual" and dev.get("fs_type"):
        text = f"{text} ({dev['fs_type']})"
    return text, note


def pcie_text(p: Mapping[str, Any], which: str) -> str:
    gen, width, speed = p.get(f"{which}_gen"), p.get(f"{which}_width"), p.get(f"{which}_speed")
    parts = [f"Gen{gen}" if gen is not None else "", f"x{width}" if width is not None else ""]
    text = " ".join(x for x in parts if x)
    if num(speed) is not None:   # device.py records GT/s as a number; older files kept sysfs's string
        speed = f"{num(speed):g} GT/s"
    if speed:
        text = f"{text} ({speed})" if text else str(speed)
    return text or "—"


def downtrained(p: Mapping[str, Any]) -> bool:
    if p.get("downtrained") is not None:
        return bool(p.get("downtrained"))
    cg, mg, cw, mw = (num(p.get(k)) for k in ("current_gen", "max_gen", "current_width", "max_width"))
    return bool((cg is not None and mg is not None and cg < mg) or (cw is not None and mw is not None and cw < mw))


def link_rows(dev: Mapping[str, Any]) -> tuple[list[Row], str]:
    p = dev.get("pcie")
    if not isinstance(p, Mapping):
        return [("PCIe link", "not a PCIe device" if dev.get("kind") != "nvme" else "unknown", "")], ""
    cur, mx = pcie_text(p, "current"), pcie_text(p, "max")
    if downtrained(p):
        flag = (f"PCIe link trained below its maximum: running {cur}, capable of {mx}. "
                "Bandwidth is capped by the link; reseat the drive or check the slot/riser before trusting figures.")
        return [("PCIe link (current)", f"⚠ {cur} — below maximum", "flag"), ("PCIe link (max)", mx, "")], flag
    return [("PCIe link (current)", cur, ""), ("PCIe link (max)", mx, "")], ""


def identity_rows(dev: Mapping[str, Any]) -> list[Row]:
    rot = dev.get("rotational")
    return [
        ("Model", _s(dev.get("model")), ""),
        ("Serial", _s(dev.get("serial")), ""),
        ("Firmware", _s(dev.get("firmware")), ""),
        ("Kind", _s(dev.get("kind"), "unknown"), ""),
        ("Device", " ".join(x for x in (_s(dev.get("partition") or dev.get("name"), ""),
                                        f"({dev['dev']})" if dev.get("dev") else "") if x) or "—", ""),
        ("Controller", _s(dev.get("controller")), ""),
        ("Stacked on", _s(dev.get("stacked_on")), ""),
        ("Capacity", fmt_bytes(dev.get("capacity_bytes")), ""),
        ("Logical block", f"{dev['logical_block_size']} B" if dev.get("logical_block_size") else "—", ""),
        ("Filesystem", _s(dev.get("fs_type")), ""),
        ("Mount point", _s(dev.get("mount_point")), ""),
        ("I/O scheduler", _s(dev.get("scheduler")), ""),
        ("Rotational", "—" if rot is None else ("yes" if rot else "no"), ""),
        ("NUMA node", _s(dev.get("numa_node")), ""),
    ]


def _change(before: Any, after: Any) -> float | None:
    b, a = num(before), num(after)
    return None if a is None or b is None else a - b


def smart_rows(before: Any, after: Any) -> tuple[list[tuple[str, str, str, str, str]], str]:
    b, a = as_map(before), as_map(after)
    reasons = [str(x["unavailable"]) for x in (b, a) if "unavailable" in x]
    if reasons or (not b and not a):
        why = "; ".join(dict.fromkeys(reasons)) or "not recorded"
        return [], f"SMART unavailable: {why}"
    rows = []

    def add(name: str, key: str, show: Callable[[float], str], bad_if_rise: bool) -> None:
        before_v, after_v = num(b.get(key)), num(a.get(key))
        d = _change(before_v, after_v)
        change = "—" if d is None else ("+" if d > 0 else "") + show(d)
        rows.append((name, "—" if before_v is None else show(before_v), "—" if after_v is None else show(after_v),
                     change, "flag" if bad_if_rise and d is not None and d > 0 else ""))

    add("Temperature", "temperature_c", lambda v: f"{v:g} °C", False)
    # warning_temp_time grows while the drive sits above its warning temperature: it throttles there.
    add("Thermal throttling time", "warning_temp_time", lambda v: f"{v:g} min", True)
    add("Critical temperature time", "critical_comp_time", lambda v: f"{v:g} min", True)
    add("Percent used", "percent_used", lambda v: f"{v:g}%", False)
    add("Media errors", "media_errors", lambda v: f"{v:g}", True)
    add("Data read", "data_units_read_bytes", fmt_bytes, False)
    cw = num(a.get("critical_warning"))
    rows.append(("Critical warning", _s(b.get("critical_warning")), _s(a.get("critical_warning")), "",
                 "flag" if cw else ""))
    return rows, ""


OPTIONAL_FIELDS = ("Controller", "Stacked on")   # shown only when the device has them


def drive_view(target: Mapping[str, Any]) -> DriveView:
    dev = as_map(target.get("device"))
    kind, note = kind_of(dev)
    is_nvme = dev.get("kind") == "nvme"
    links, flag = link_rows(dev)
    smart, smart_note = smart_rows(dev.get("smart_before"), dev.get("smart_after"))
    rows = [r for r in identity_rows(dev) if r[0] not in OPTIONAL_FIELDS or r[1] != "—"]
    rows[4:4] = links
    headline = " ".join(x for x in (_s(dev.get("model"), ""),) if x) or kind
    return DriveView(
        label=_s(target.get("label"), "target"), path=_s(target.get("path")), embedded=bool(target.get("embedded")),
        headline=headline, kind=kind, kind_note="" if is_nvme else note, is_nvme=is_nvme, link_flag=flag,
        rows=rows, smart_rows=smart, smart_note=smart_note,
    )


def drive_compare_rows(target: Mapping[str, Any]) -> list[Row]:
    """Identity, link and SMART deltas flattened to one list, for side-by-side comparison."""
    view = drive_view(target)
    rows = [("Label", view.label, ""), ("Path", view.path, ""), ("What it is", view.kind, "")] + view.rows
    for name, before, after, change, css in view.smart_rows:
        rows.append((f"SMART {name}", f"{before} → {after}" + (f" ({change})" if change not in ("", "—") else ""), css))
    if view.smart_note:
        rows.append(("SMART", view.smart_note, ""))
    return rows


def environment_rows(env: Mapping[str, Any]) -> list[tuple[str, str]]:
    cpu = as_map(env.get("cpu"))
    cpu_text = " ".join(x for x in (
        _s(cpu.get("brand"), ""),
        f"({cpu['count']} cores)" if cpu.get("count") else "",
        _s(cpu.get("arch"), "")) if x) or "—"
    gpus = env.get("gpu")
    if as_list(gpus):
        gpu_text = "; ".join(
            ", ".join(x for x in (_s(as_map(g).get("name"), "GPU"), _s(as_map(g).get("memory"), ""),
                                  f"driver {as_map(g)['driver']}" if as_map(g).get("driver") else "") if x)
            for g in as_list(gpus))
    else:
        gpu_text = "none (no NVIDIA GPU found)"
    rows = [("Kernel", _s(env.get("kernel"))), ("CPU", cpu_text),
            ("Memory", fmt_bytes(env.get("memory"), binary=True)), ("GPU", gpu_text), ("Host", _s(env.get("node")))]
    versions = as_map(env.get("versions"))
    for key, name in VERSION_NAMES:
        rows.append((name, _s(versions.get(key), "not installed")))
    return rows
