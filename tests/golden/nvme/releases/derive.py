"""Writes the smart-log-*.json golden files in this directory (derived, not captured).

No build machine has an NVMe drive, so these are what each nvme-cli release's `json_smart_log`
prints for one fixed SMART page, derived by reading that release's source (linux-nvme/nvme-cli,
tags listed per file; nvme-print.c / nvme-print-json.c, util/json.c, util/json.h):
key names and order, how 128-bit counters are serialized, and the object/indent style of the JSON
writer. Rerun `python derive.py` to regenerate; the test compares the parsed values, not the bytes.
"""
from __future__ import annotations

from pathlib import Path

# One SMART page: 40 °C (313 K, nvme-cli subtracts 273), 1% used, 48213355 data units read.
PAGE = {"critical_warning": 0, "temperature": 313, "avail_spare": 100, "spare_thresh": 10, "percent_used": 1,
        "endurance_grp_critical_warning_summary": 0, "data_units_read": 48213355, "data_units_written": 20511721,
        "host_read_commands": 901228813, "host_write_commands": 402716150, "controller_busy_time": 1266,
        "power_cycles": 41, "power_on_hours": 5321, "unsafe_shutdowns": 9, "media_errors": 0,
        "num_err_log_entries": 0, "warning_temp_time": 0, "critical_comp_time": 0,
        "temperature_sensor_1": 313, "temperature_sensor_2": 318}
COUNTERS = ("data_units_read", "data_units_written", "host_read_commands", "host_write_commands",
            "controller_busy_time", "power_cycles", "power_on_hours", "unsafe_shutdowns", "media_errors",
            "num_err_log_entries")
THERMAL = ("thm_temp1_trans_count", "thm_temp2_trans_count", "thm_temp1_total_time", "thm_temp2_total_time")


def _value(key: str, counter_style: str) -> str:
    v = PAGE.get(key, 0)
    if key in COUNTERS:
        return {"number": str(v), "fixed6": f'"{v:.6f}"', "string": f'"{v}"', "double": f"{float(v)!r}"}[counter_style]
    return str(v)


def _keys(endurance: bool, sensors: bool, thermal: bool) -> list[str]:
    keys = ["critical_warning", "temperature", "avail_spare", "spare_thresh", "percent_used"]
    keys += ["endurance_grp_critical_warning_summary"] if endurance else []
    keys += list(COUNTERS) + ["warning_temp_time", "critical_comp_time"]
    keys += ["temperature_sensor_1", "temperature_sensor_2"] if sensors else []
    return keys + (list(THERMAL) if thermal else [])


def render(counter_style: str, *, own_writer: bool, endurance: bool, sensors: bool, thermal: bool,
           temperature_key: str = "temperature", warning_object: str | None = None) -> str:
    sep = '" : ' if own_writer else '":'   # nvme-cli's own writer (<= 2.0) vs json-c pretty print
    lines = []
    for k in _keys(endurance, sensors, thermal):
        name = temperature_key if k == "temperature" else k
        if k == "critical_warning" and warning_object:
            inner = [f'{warning_object}":0'] + [f'{b}":0' for b in ("available_spare", "temp_threshold",
                                                                   "reliability_degraded", "ro", "vmbu_failed", "pmr_ro")]
            body = ",\n".join(f'    "{x}' for x in inner)
            lines.append(f'  "critical_warning":{{\n{body}\n  }}')
        else:
            lines.append(f'  "{name}{sep}{_value(k, counter_style)}')
    return "{\n" + ",\n".join(lines) + "\n}\n"


FILES = {
    # v0.9-v1.3: own writer, "%.0Lf" for long double counters, no sensors yet.
    "smart-log_nvme-cli-1.0.json": render("number", own_writer=True, endurance=False, sensors=False, thermal=False),
    # v1.12-v2.0: + endurance group summary, temperature sensors, thermal management counters.
    "smart-log_nvme-cli-1.16.json": render("number", own_writer=True, endurance=True, sensors=True, thermal=True),
    # v2.1.x: json-c; counters via util_json_object_new_double = asprintf("%Lf") -> a string with 6 decimals.
    "smart-log_nvme-cli-2.1.json": render("fixed6", own_writer=False, endurance=True, sensors=True, thermal=True),
    # v2.2-v2.6: util_json_object_new_uint128 -> a plain JSON string of digits.
    "smart-log_nvme-cli-2.3.json": render("string", own_writer=False, endurance=True, sensors=True, thermal=True),
    # v2.7: the string gets a serializer that prints it unquoted; the key is "Temperature" (-H: "Value").
    "smart-log_nvme-cli-2.7.json": render("number", own_writer=False, endurance=True, sensors=True, thermal=True,
                                          temperature_key="Temperature"),
    # v2.11-v2.12: critical_warning is always the decoded object {"value": ...}.
    "smart-log_nvme-cli-2.11.json": render("number", own_writer=False, endurance=True, sensors=True, thermal=True,
                                           warning_object="value"),
    # v2.13-v3.0 (rc): as 2.8-2.10 (number counters, "temperature", plain critical_warning).
    "smart-log_nvme-cli-2.16.json": render("number", own_writer=False, endurance=True, sensors=True, thermal=True),
    # -H (human) on 2.7: "Value" capitalized inside the decoded object.
    "smart-log_nvme-cli-2.7_human.json": render("number", own_writer=False, endurance=True, sensors=True, thermal=True,
                                                temperature_key="Temperature", warning_object="Value"),
    # json-c doubles (json_object_new_double, used by json_object_add_value_float): 0.0, 48213355.0.
    "smart-log_json-c_double.json": render("double", own_writer=False, endurance=True, sensors=True, thermal=True),
}

if __name__ == "__main__":
    here = Path(__file__).parent
    for name, text in FILES.items():
        (here / name).write_text(text)
