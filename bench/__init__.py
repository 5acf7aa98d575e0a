"""Benchmarks of aunet: model complexity, training-step throughput and their results."""
