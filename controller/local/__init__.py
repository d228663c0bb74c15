"""The local backend: jobimage subprocesses on this machine, one per GPU (or one on the CPU)."""
