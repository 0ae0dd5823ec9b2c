"""Automatic collection: ASGI requests, outgoing HTTP, SQL and Redis calls."""
