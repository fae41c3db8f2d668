"""Decide: pure functions from observations to the desired state and to a plan. No I/O."""
