"""Benchmarks: they print figures and ratios against a named baseline; they never fail on time."""
