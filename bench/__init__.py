"""Benchmarks: each script prints its figures and records them in bench/BENCHMARKS.md."""
