"""profiles: traits."""
