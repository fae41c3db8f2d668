"""Docker's log of the container is capped, in compose.yaml and in the fleet's compose file,
so an SD card never fills from it (the container tests check that the engine applies it)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML (Apprise's dependency) ships no types

from fleet import data, render
from testbed import REPO

CAP = {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}


def service(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(text)
    return dict(parsed["services"]["ups-nut-smart"])


@pytest.mark.parametrize("image_source", ["load", "build"])
def test_the_fleets_compose_file_caps_dockers_log(image_source: str) -> None:
    given = {"image_source": image_source}
    config = data.load("pi1", lambda key: given.get(key, data.DEFAULTS[key]), {})
    assert service(render.compose(config))["logging"] == CAP


def test_compose_yaml_caps_dockers_log() -> None:
    assert service((REPO / "compose.yaml").read_text())["logging"] == CAP
