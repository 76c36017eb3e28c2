"""Helpers the tests share (not fixtures: those stay in conftest files)."""
