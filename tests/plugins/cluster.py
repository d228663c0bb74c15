"""Fixture plugin: cluster (filled in by its owner)."""
