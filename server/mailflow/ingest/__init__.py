"""Ingest: read mail server logs and turn them into message facts."""
