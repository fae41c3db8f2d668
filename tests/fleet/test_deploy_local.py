"""The deploy through pyinfra's CLI on this machine (@local): bad data fails the host
before anything on it changes, and a dry run against a fresh host writes nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO


def pyinfra(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "pyinfra"), "@local", "deploy.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("ups_name=my ups", "host @local: data ups_name"),
        ("image_source=rsync", "host @local: data image_source: 'rsync' is not one of load, build, pull"),
        ("scan_interval=soon", "host @local: data scan_interval"),
        ("nut_listen=localhost", "host @local: data nut_listen"),
    ],
)
def test_bad_data_fails_the_host_with_the_key_and_writes_nothing(tmp_path: Path, data: str, message: str) -> None:
    project = tmp_path / "ups-nut-smart"
    result = pyinfra("-y", "--data", data, "--data", f"project_dir={project}")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert message in out
    assert not project.exists()
