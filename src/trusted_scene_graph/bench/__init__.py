"""Benchmarks: each writes a JSON of ratios measured side by side in one run (`tsg bench ...`)."""
