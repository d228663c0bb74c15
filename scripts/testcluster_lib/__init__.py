"""Helpers for scripts/testcluster: build pinned control-plane binaries, run them on loopback."""
