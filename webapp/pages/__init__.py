"""The htmx web page: server-rendered Jinja2 pages and the fragments they poll and swap."""

from webapp.pages.views import router

__all__ = ["router"]
