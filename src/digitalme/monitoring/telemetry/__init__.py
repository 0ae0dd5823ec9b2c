"""Telemetry: capture on the request path, enrich / redact / aggregate / sample / store off it."""
