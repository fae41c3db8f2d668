"""The layout's rule (layers import downward only) and the log format's escaping."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from reconcile import logfmt
from testbed import REPO

# Lower layers never import higher ones. decide/ and act/ are siblings: neither imports the other.
LAYERS = {
    "base": 0,  # model, nutsyntax, logfmt, events, waiting, settings, userconfig
    "observe": 1,
    "decide": 2,
    "act": 2,
    "outputs": 2,  # consumers of the event stream and of what upsd serves (metrics, MQTT, notifications)
    "store": 3,
    "simulate": 3,
    "nofile": 3,  # upsd's MAXCONN fitted to the open-files limit at start: observe, decide, act
    "observer": 4,  # the read caches and one frozen Observation
    "persist": 4,  # what a pass keeps on disk
    "cycle": 5,  # the wiring of one pass
    "wakeups": 5,  # what the run loop sleeps on (uevents, signals, a deadline)
    "timers": 5,  # the run loop's timed jobs (the schedule package)
    "ticker": 6,  # one tick of the run loop: settle, pass, verdict, supervision
    "stopping": 6,  # how the run loop stops (the power cycle on the way down, the daemons)
    "run": 7,
    "cli": 8,
    "__main__": 9,
}


def layer(module: str) -> str:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "base"
    return name if name in LAYERS else "base"


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("reconcile"):
            found |= {f"{node.module}.{a.name}" if node.module == "reconcile" else node.module for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("reconcile")}
    return found


def modules() -> list[tuple[str, Path]]:
    root = REPO / "reconcile"
    return [(".".join(p.relative_to(REPO).with_suffix("").parts), p) for p in sorted(root.rglob("*.py"))]


def test_layers_import_downward_only() -> None:
    wrong = []
    for module, path in modules():
        mine = layer(module)
        for target in imports(path):
            theirs = layer(target)
            if theirs == mine:
                continue
            if LAYERS[theirs] >= LAYERS[mine]:
                wrong.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert wrong == []


def test_the_agent_never_imports_the_rollout() -> None:
    """reconcile/ runs in the image, which has neither fleet/ nor pyinfra."""
    for module, path in modules():
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {n for n in names if n.split(".")[0] in ("fleet", "pyinfra")}, module


def test_decide_is_pure() -> None:
    """No module of decide/ reaches for the system (files, processes, sockets, clocks)."""
    forbidden = {"os", "subprocess", "socket", "time", "shutil", "pathlib", "tempfile"}
    for module, path in modules():
        if layer(module) == "decide":
            tree = ast.parse(path.read_text())
            names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            assert not names & forbidden, module


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("two words", '"two words"'),
        ("cr\rlf\n", '"cr\\rlf\\n"'),
        ("esc\x1b[31mred", '"esc\\x1b[31mred"'),
        ('quote"back\\', '"quote\\"back\\\\"'),
        ("nul\x00bell\x07", '"nul\\x00bell\\x07"'),
        ("", '""'),
    ],
)
def test_logfmt_escapes_every_control_character(value: str, expected: str) -> None:
    line = logfmt.format_event("info", "x", {"v": value})
    assert line.endswith(f" v={expected}")
    assert "\r" not in line and "\n" not in line and "\x1b" not in line


def test_the_log_file_is_capped_and_rotated_once(tmp_path: Path) -> None:
    log = tmp_path / "hotplug.log"
    assert logfmt.setup(False, log, max_bytes=4096) is None
    try:
        for n in range(400):
            logfmt.info("bus.change", devices=n, settle_left="2.0s")
    finally:
        logfmt.setup(False, None)
    assert log.stat().st_size <= 4096 and (tmp_path / "hotplug.log.1").stat().st_size <= 4096
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hotplug.log", "hotplug.log.1"]
    assert "devices=399" in log.read_text()


# --- the shape of the core (issue: one reconcile core that is easy to live in) ----------

MAX_METHODS = 10
CYCLE_MAX_LINES = 140


def _classes(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text())
    return [
        (node.name, sum(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) for n in node.body))
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    ]


def test_no_class_has_more_than_ten_methods() -> None:
    roots = [REPO / "reconcile", REPO / "fleet"]
    big = [
        f"{path.relative_to(REPO)}: {name} has {n} methods"
        for root in roots
        for path in sorted(root.rglob("*.py"))
        for name, n in _classes(path)
        if n > MAX_METHODS
    ]
    assert big == []


def test_a_pass_is_observe_then_one_decide_then_act_and_cycle_is_only_the_wiring() -> None:
    cycle = REPO / "reconcile" / "cycle.py"
    assert len(cycle.read_text().splitlines()) <= CYCLE_MAX_LINES
    used = imports(cycle)
    # cycle reaches decide/ through its one entry (and the event report), never step by step
    steps = {"classify", "desired", "identity", "power", "plan", "render"}
    assert not {m for m in used if m.split(".")[-1] in steps and m.startswith("reconcile.decide")}, used
    assert "reconcile.decide.decision" in used and "reconcile.observer" in used
    # decide/ is pure: no module there touches the system
    for module, path in modules():
        if module.startswith("reconcile.decide"):
            touching = {m for m in imports(path) if m.startswith(("reconcile.act", "reconcile.store"))}
            assert not touching, f"{module} imports {touching}"


def test_every_event_kind_is_documented_in_the_one_place() -> None:
    from reconcile import events

    doc = events.__doc__ or ""
    kinds = {c.kind for c in vars(events).values() if isinstance(c, type) and issubclass(c, events.Event)}
    kinds.discard("event")
    assert kinds and all(kind in doc for kind in kinds), sorted(k for k in kinds if k not in doc)


def test_benchmarks_and_testbed_never_import_the_tests() -> None:
    """What both need is in testbed/ (the sandbox, Docker, the images, the Pis)."""

    def imported(path: Path) -> set[str]:
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        return found

    wrong = []
    for folder, banned in (("benchmarks", ("tests",)), ("testbed", ("tests", "benchmarks"))):
        for path in sorted((REPO / folder).rglob("*.py")):
            bad = {m for m in imported(path) if m.split(".")[0] in banned}
            wrong += [f"{path.relative_to(REPO)} imports {m}" for m in sorted(bad)]
    assert wrong == []


# fleet/ in layers of its own: lower modules never import higher ones; of the agent it
# uses only the base layer (the agent's own parsers, so both accept the same values).
FLEET_LAYERS = {
    **{"config": 0, "digest": 0, "facts": 1, "image": 0, "keys": 0, "clients": 1, "render": 2, "data": 3, "ops": 3},
    **{"hostups": 0},
    **{"rollback": 4, "host_nut": 4, "steps": 5, "report": 0, "status": 4},
}
AGENT_FOR_FLEET = {"reconcile.settings", "reconcile.userconfig", "reconcile.nutsyntax"}


def test_fleet_imports_downward_only_and_only_the_agents_parsers() -> None:
    wrong = []
    for path in sorted((REPO / "fleet").glob("*.py")):
        if path.stem == "__init__":
            continue
        mine = FLEET_LAYERS[path.stem]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            agent_parser = node.module in AGENT_FOR_FLEET or (
                node.module == "reconcile" and {a.name for a in node.names} <= {"settings"}
            )
            if node.module.startswith("reconcile") and not agent_parser:
                wrong.append(f"fleet/{path.name} imports {node.module}")
            targets = [a.name for a in node.names] if node.module == "fleet" else [node.module.split(".")[-1]]
            if node.module.startswith("fleet"):
                for target in targets:
                    if FLEET_LAYERS[target] >= mine and target != path.stem:
                        wrong.append(f"fleet/{path.name} ({mine}) imports fleet.{target} ({FLEET_LAYERS[target]})")
    assert wrong == []


def test_every_package_of_the_agent_is_installed() -> None:
    """pyproject.toml lists the packages by hand: one left out is missing from the image."""
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(REPO).parent.parts) for p in (REPO / "reconcile").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)
