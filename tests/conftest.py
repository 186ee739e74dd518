"""Shared test helpers: paths to the fixture corpora."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data"
TORTURE = DATA / "sip-torture"

# Hypothesis: deterministic in CI (a red run must be reproducible from the same commit);
# locally, random as usual to keep finding new cases.
import os  # noqa: E402

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
