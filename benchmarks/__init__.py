"""profiles: benchmarks."""
