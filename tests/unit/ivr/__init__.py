"""Unit tests of the IVR core."""
