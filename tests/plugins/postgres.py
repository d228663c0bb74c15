"""Fixture plugin: postgres (filled in by its owner)."""
