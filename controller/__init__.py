"""Controller side: turns queued rows into jobs (local processes or Kubernetes Jobs) and results back into rows."""
