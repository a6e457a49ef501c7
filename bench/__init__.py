"""Benchmarks: scripts run as `python bench/NAME.py`, each printing its numbers (see proof.py)."""
