"""Fixture plugin: minio (filled in by its owner)."""
