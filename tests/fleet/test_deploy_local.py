"""The deploy through pyinfra's CLI on this machine (@local): bad data fails the host
before anything on it changes, and a dry run against a fresh host writes nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testbed import REPO


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


def _pulled(image: str) -> bool:
    found = subprocess.run(["docker", "images", "-q", image], capture_output=True, text=True, timeout=60, check=True)
    return bool(found.stdout.strip())


def test_a_dry_run_against_a_fresh_host_shows_every_file_and_writes_nothing(tmp_path: Path) -> None:
    """pyinfra's --dry --diff on a host that has no project yet: the plan names each file
    with its content (the diff against nothing), and neither the host's files nor its
    Docker engine change. image_source=pull, so that no image is built for the preview."""
    project = tmp_path / "ups-nut-smart"
    assert not _pulled("ups-nut-smart:1.0.0")
    result = pyinfra(
        "--dry",
        "--diff",
        "--data",
        f"project_dir={project}",
        "--data",
        "image_source=pull",
        "--data",
        "image=ups-nut-smart:1.0.0",
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    for name in ("compose.yaml", ".env", "config.toml"):
        assert f"Will create {project}/.next/{name}" in out, out  # staged: live with the recreate
    assert 'listen = ["0.0.0.0:3493"]' in out  # the diff shows the content
    assert "Pull ups-nut-smart:1.0.0" in out and "Refuse this host" not in out
    assert not project.exists() and list(tmp_path.iterdir()) == []
    # The image is the first thing the deploy changes in Docker (the container comes after).
    assert not _pulled("ups-nut-smart:1.0.0")


def test_a_dry_run_builds_no_image_on_the_controller(tmp_path: Path) -> None:
    """--dry with image_source = load and an image the controller does not have: the plan
    says it would be built and shipped, and nothing is built."""
    project, image = tmp_path / "ups-nut-smart", "ups-nut-smart:never-built"
    assert not _pulled(image)
    result = pyinfra("--dry", "--data", f"project_dir={project}", "--data", f"image={image}")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "(dry run: not built)" in out, out
    assert not _pulled(image) and not _pulled(image.replace(":never-built", ":never-built-amd64"))
    assert not project.exists()
