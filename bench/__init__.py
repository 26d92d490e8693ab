"""Benchmarks of the platform against its baselines; run with `make bench` (= `python -m bench`)."""
