"""The HTTP API (FastAPI). Imports no torch."""
