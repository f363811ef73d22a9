"""profiles: ingest."""
