"""The Kubernetes adapter: build and read `batch/v1` Jobs, talk to the API server, lead."""
