"""Benchmarks: reproducible commands whose figures are written down in bench/README.md."""
