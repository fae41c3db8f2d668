"""The typed state files and the Store: a write that fails keeps the value in memory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reconcile import store
from reconcile.decide.identity import NameBook
from reconcile.model import Owned


def test_each_state_file_round_trips_through_its_own_parser(tmp_path: Path) -> None:
    st = store.Store(tmp_path)
    ledger = {"upsd": Owned("upsd", 42, 1000, (("upsd.conf", "absent"),))}
    st.save(store.PROCS, ledger)
    st.save(store.NAMES, NameBook(primary="k", names={"k": "my-ups"}))
    fresh = store.Store(tmp_path)
    assert fresh.load(store.PROCS) == ledger
    assert fresh.load(store.NAMES) == NameBook(primary="k", names={"k": "my-ups"})
    assert fresh.load(store.SEEN) is None  # absent
    assert os.stat(tmp_path / "procs.json").st_mode & 0o777 == 0o600


def test_a_failed_write_is_kept_in_memory_logged_once_and_written_once_it_can_be(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconcile import logfmt

    logfmt.setup(False, None)
    agent = tmp_path / "agent"
    agent.mkdir()
    st = store.Store(agent)
    # Why a dir moved away: the tests run as root, for whom no mode makes a dir unwritable;
    # with the dir gone every write fails (ENOENT), as it does on a full disk (ENOSPC).
    agent.rename(tmp_path / "gone")
    first = {"upsd": Owned("upsd", 1, 2, ())}
    second = {"upsd": Owned("upsd", 3, 4, ())}
    assert st.save(store.PROCS, first) is False
    assert st.load(store.PROCS) == first  # from memory, not from a file
    assert st.save(store.PROCS, second) is False
    assert st.load(store.PROCS) == second
    out = capsys.readouterr().out
    assert out.count("event=state.write file=procs.json") == 1, out
    (tmp_path / "gone").rename(agent)
    st.retry_unsaved((store.PROCS,))
    assert json.loads((agent / "procs.json").read_text())["upsd"]["pid"] == 3
    assert 'then="written again"' in capsys.readouterr().out
    assert st.unsaved == {}
