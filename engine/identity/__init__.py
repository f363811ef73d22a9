"""profiles: engine/identity."""
