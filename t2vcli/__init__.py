"""The `t2v` command: serve the app, and a client for a running server."""
