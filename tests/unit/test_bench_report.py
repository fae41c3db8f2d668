"""docs/benchmarks.md is written from the results `python -m benchmarks` gathers: the report
is checked here on made-up results (no measurement: no test asserts a time), so a broken
report is found by the test run, not by the next person who runs the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import report


def results(
    tick_ms: float = 0.2, plug: float = 3.5, interruption: float = 0.0, armv7_cold: float = 200.0
) -> dict[str, Any]:
    return {
        "machine": {
            "date": "2026-01-01 00:00 UTC",
            "host": "Linux 6.1 x86_64",
            "cpu": "Some CPU, 2 cores",
            "memory": "24 GiB",
            "python": "3.11.2",
            "nut_host": "Network UPS Tools upsd 2.8.0",
            "docker": "20.10.24",
        },
        "nut_in_image": "Network UPS Tools upsd 2.8.4",
        "tick": [
            {
                "devices": n,
                "ours_no_change": tick_ms / 1000 * (1 + n / 1000),
                "ours_change": 0.009,
                "ours_no_change_spaced": 0.004,
                "baseline_per_tick_spaced": 0.03,
                "baseline_per_tick": 0.010 + n * 0.0002,
                "baseline_scan_umockdev": 0.002,
                "baseline_scan_plain": 0.001,
            }
            for n in (1, 10, 100, 500)
        ],
        "latency": {si: {"plug": [plug, plug + 0.2, plug - 0.1], "unplug": [2.9, 3.0, 3.1]} for si in ("1", "2", "5")},
        "latency_baseline": {"plug": [4.0, 6.0], "unplug": [3.5, 5.5], "restart": [1.5, 1.7]},
        "baseline_interval": 5.0,
        "settle": 2.0,
        "interruption": {"ours": [interruption, 0.0], "baseline": [1.6, 1.8]},
        "images": {
            "amd64": {"tarball": 128.5, "debian": 159.0},
            "arm64": {"tarball": 154.0, "debian": 186.0},
            "armv7": {"tarball": 121.0},
        },
        "image_builds": {},
        "builds": {
            "cross": {
                "amd64": {"cold": 95.0, "warm": 2.0},
                "arm64": {"cold": 250.0, "warm": 3.0},
                "armv7": {"cold": armv7_cold, "warm": 3.5},
            },
            "emulated_arm64": {"cold": 1000.0, "warm": 3.0, "commit": "2592666"},
            "files": {"both": 120, "only_cross": [], "only_emulated": ["f ./lib/libextra.so.1"]},
        },
        "startup": {"no_ups": [1.1, 1.2], "ups": [1.4, 1.6]},
        "resources": {
            "agent_rss_mb": 22.0,
            "container_mb": 31.0,
            "idle_cpu_percent": 0.2,
            "idle_cpu_agent_percent": 0.1,
            "idle_cpu_nut_percent": 0.05,
            "idle_cpu_other_percent": 0.05,
        },
    }


def test_the_report_holds_the_tables_the_plots_and_the_machine(tmp_path: Path) -> None:
    headline = report.write(results(), tmp_path)
    text = (tmp_path / "benchmarks.md").read_text()
    for png in ("bench-tick-cost.png", "bench-latency.png", "bench-interruption.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in text
    assert "2026-01-01 00:00 UTC" in text and "Some CPU, 2 cores" in text
    assert "| 500 | 0.30 ms |" in text  # the tick table, one row per bus size
    assert "0–60 s" in headline and "30–60 s" in headline and "80–120 MB" in headline
    assert "**missed**" not in headline
    # the build section: each platform cold and warm, the emulated build beside, what differs
    assert "| armv7 (cross-compiled, runtime stage under qemu) | 3 min 20 s | 4 s |" in text
    assert "| arm64, NUT compiled under qemu (the tree at 2592666) | 16 min 40 s | 3 s |" in text
    assert "only in the emulated build: f ./lib/libextra.so.1" in text
    assert "| 121 MB | — |" in text  # arm/v7 has no Debian-NUT variant
    assert "4 min 10 s arm64, 3 min 20 s armv7" in headline and "16 min 40 s arm64" in headline


def test_a_report_without_build_times_still_writes(tmp_path: Path) -> None:
    old = results()
    del old["builds"]  # a docs/benchmarks.json from before the section existed
    headline = report.write(old, tmp_path)
    assert "Pi image build" not in headline
    assert "Not measured in this run" in (tmp_path / "benchmarks.md").read_text()


def test_a_missed_target_is_marked_and_explained(tmp_path: Path) -> None:
    headline = report.write(results(tick_ms=8.0, plug=9.0, interruption=0.4, armv7_cold=400.0), tmp_path)
    rows = {line.split("|")[1].strip(): line for line in headline.splitlines()[2:]}
    assert "**missed**" in rows["plug → data (p95, SCAN_INTERVAL 2 + SETTLE_TIME 2)"]
    assert "**missed**" in rows["client interruption on an untouched UPS"]
    assert "**missed**" in rows["no-change tick, 10 USB devices (CPU)"]
    assert "**missed**" not in rows["idle CPU (one core, 60 s, the default image: uevents)"]
    assert "**missed**" in rows["Pi image build, cold (NUT 2.8.4 cross-compiled)"]
    text = (tmp_path / "benchmarks.md").read_text()
    missed = text[text.index("## Where a target is missed") :]
    assert "**Client interruption**" in missed and "**No-change tick, 5 ms**" in missed
    assert "**Idle CPU**" not in missed and "**Pi image build**" in missed


def test_the_readme_quotes_the_headline_between_its_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# intro\n\n{report.README_START}\nold table\n{report.README_END}\n\n## after\n")
    assert report.quote_in_readme(readme, results())
    text = readme.read_text()
    assert "old table" not in text and "| container start → `upsc my-ups` answers |" in text
    assert text.startswith("# intro\n") and text.endswith(f"{report.README_END}\n\n## after\n")
    plain = tmp_path / "OTHER.md"
    plain.write_text("no markers\n")
    assert not report.quote_in_readme(plain, results()) and plain.read_text() == "no markers\n"


def wake_results(agent: float = 0.04) -> dict[str, Any]:
    idle = {
        "agent_percent": agent, "upsd_percent": 0.02, "upsmon_percent": 0.01, "driver_percent": 0.02,
        "health_percent": 0.01, "total_percent": agent + 0.06, "agent_inside_percent": agent,
        "agent_ms_per_pass": 1.6, "agent_rss_mb": 25.0, "healthy": 1.0,
    }  # fmt: skip
    return {
        "latency": {
            "uevents": {"plug": [1.9, 2.0, 2.1], "unplug": [0.6, 0.7, 0.8]},
            "polling": {"plug": [3.9, 4.0, 4.1], "unplug": [3.5, 3.6, 3.7]},
        },
        "idle": {"uevents": idle, "polling": {**idle, "agent_percent": 0.07, "total_percent": 0.9}},
        "window": 60.0,
    }


def test_the_wake_section_compares_uevents_with_polling_and_marks_a_miss(tmp_path: Path) -> None:
    headline = report.write({**results(), "wake": wake_results()}, tmp_path)
    text = (tmp_path / "benchmarks.md").read_text()
    assert "## Wake on uevents" in text and "| plug, uevents (defaults) | 3 | 2.00 s |" in text
    assert "| uevents, nut-health (as shipped) | 0.100 | 0.040 |" in text
    assert "polling, old health check: 0.90 %" in headline and "**missed**" not in headline
    headline = report.write({**results(), "wake": wake_results(agent=0.08)}, tmp_path)
    rows = {line.split("|")[1].strip(): line for line in headline.splitlines()[2:]}
    assert "**missed**" in rows["idle CPU, uevents (as shipped; one core, 60 s)"]
    assert "**Idle CPU with uevents**" in (tmp_path / "benchmarks.md").read_text()
