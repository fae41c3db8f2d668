from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from reconcile.act.daemons import become_subreaper
from tests.helpers import Sandbox, make_sandbox, nut_readable_dir


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


def need_nut() -> None:
    reason = _have_nut()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs NUT: its absence there is a failure, not a skip
        pytest.skip(reason)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    need_nut()
    with nut_readable_dir() as root:
        yield from make_sandbox(root)
