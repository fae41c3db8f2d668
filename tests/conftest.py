from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from reconcile.act.daemons import become_subreaper
from testbed import images
from testbed.docker import docker
from testbed.nut import Sandbox, make_sandbox, nut_readable_dir
from tests.helpers import need


def _have_nut() -> str | None:
    missing = [p for p in ("upsc", "upsdrvctl") if shutil.which(p) is None]
    missing += [p for p in ("/lib/nut/upsd", "/lib/nut/dummy-ups", "/lib/nut/upsmon") if not os.path.exists(p)]
    if missing:
        return "NUT not installed (apt-get install nut-server nut-client): missing " + ", ".join(missing)
    if os.geteuid() != 0:
        return "the NUT sandbox runs the daemons as root"
    return None


@pytest.fixture(scope="session", autouse=True)
def _reap_orphans() -> Iterator[None]:
    """Daemons the CLI starts outlive it; as child subreaper, pytest gets them back and
    can reap them, instead of leaving zombies whose PIDs still look alive to NUT."""
    become_subreaper()
    yield


@pytest.fixture(scope="session", autouse=True)
def _fleet_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The fleet's controller key (fleet/keys.py) in a temp dir, never the user's own: the
    tests' derived passwords must not depend on, or create, ~/.config/ups-nut-smart."""
    before = os.environ.get("FLEET_KEY_FILE")
    os.environ["FLEET_KEY_FILE"] = str(tmp_path_factory.mktemp("fleet-key") / "fleet-key")
    yield
    if before is None:
        os.environ.pop("FLEET_KEY_FILE", None)
    else:
        os.environ["FLEET_KEY_FILE"] = before


def need_nut() -> None:
    reason = _have_nut()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs NUT: its absence there is a failure, not a skip
        pytest.skip(reason)


# The fault tests whose outcome depends on what /proc lets the agent see run twice: as
# full root, and with the container's capability set (testbed/nut.CONTAINER_CAPS).
AS_CONTAINER_TOO = {
    "tests.integration.test_uevents",  # no CAP_NET_ADMIN: the kernel's uevents must reach it still
    "tests.faults.test_state",
    "tests.faults.test_crash",
    "tests.faults.test_shutdown",
    "tests.faults.test_thresholds",  # upssched and `upsmon -c fsd` under the container's capabilities
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sandbox" in metafunc.fixturenames and metafunc.module.__name__ in AS_CONTAINER_TOO:
        metafunc.parametrize("privileges", ["root", "container-caps"], indirect=True)


@pytest.fixture
def privileges(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "root"))


@pytest.fixture
def sandbox(privileges: str) -> Iterator[Sandbox]:
    need_nut()
    with nut_readable_dir() as root:
        yield from make_sandbox(root, container_caps=privileges == "container-caps")


# --------------------------------------------------------------------------- Docker
# Here, not in tests/container, so that tests/fleet shares the very same session fixtures:
# one imported into a second conftest would be a second fixture, and a second server on
# NUT's fixed source port.
def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client (sudo ./dev.sh test installs one)"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if info.returncode != 0:
        return f"no Docker engine reachable: {info.stderr.strip().splitlines()[-1] if info.stderr.strip() else ''}"
    if docker("buildx", "version", check=False).returncode != 0:
        return "docker buildx missing (docker/engine-setup.sh installs it)"
    return None


@pytest.fixture(scope="session")
def engine() -> None:
    need(_engine_problem())


@pytest.fixture(scope="session")
def source_args(engine: None) -> Iterator[list[str]]:
    """NUT 2.8.4's source served at its fixed address for the whole session: the build
    arguments of the default image from it."""
    try:
        with images.source_served() as args:
            yield args
    except images.MissingSource as exc:
        need(f"NUT 2.8.4 source: {exc}")


# --------------------------------------------------------------------------- phase times
# Where the run's time goes, by test folder (setup, call and teardown of its tests, a session
# fixture's image build included) and by image build: dev.sh test prints it at the end,
# beside its own phases. PHASES_FILE names the file; without it nothing is written.
_phases: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    folder = "/".join(report.nodeid.split("::")[0].split("/")[:2])
    _phases[folder] = _phases.get(folder, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("PHASES_FILE")
    if not target:
        return
    from testbed.images import builds  # the image builds this session made, each with its time

    lines = [f"  {folder}\t{seconds:.1f}" for folder, seconds in sorted(_phases.items())]
    lines += [f"    image build {tag} ({how})\t{seconds:.1f}" for tag, how, seconds in builds]
    with open(target, "a", encoding="utf-8") as out:
        out.write("".join(line + "\n" for line in lines))
