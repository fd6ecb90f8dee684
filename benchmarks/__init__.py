"""Benchmark scripts: they measure times and quality and write benchmarks/results/*.json."""
