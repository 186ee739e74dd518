"""Shared test helpers: paths to the fixture corpora."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data"
TORTURE = DATA / "sip-torture"
