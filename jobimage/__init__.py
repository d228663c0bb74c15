"""The job pod: reads a dispatch manifest, makes videos with Mochi, writes results (see jobimage.entrypoint)."""
