"""t2v web app: JSON API (OpenAI Videos-compatible superset), htmx pages, models and settings."""
