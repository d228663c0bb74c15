"""Shared pytest set-up: each real dependency lives in its own plugin module."""

pytest_plugins = [
    "tests.plugins.app",
    "tests.plugins.postgres",
    "tests.plugins.minio",
    "tests.plugins.cluster",
    "tests.plugins.realnode",
    "tests.plugins.server",
]
