from tests.sandbox.browser import browser_context, demo, page, shots

__all__ = ["browser_context", "demo", "page", "shots"]
