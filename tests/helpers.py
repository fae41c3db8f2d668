"""What only the tests need on top of testbed/: pytest's skip-or-fail, and the fixtures dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def need(problem: str | None) -> None:
    """Skip for `problem`, or, under CI, which sets everything up, fail."""
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have this: {problem}")
        pytest.skip(problem)
