"""Async Job Platform: the HTTP producer (FastAPI) and everything it shares with the worker."""
