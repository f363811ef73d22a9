"""profiles: predictions."""
