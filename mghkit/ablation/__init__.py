"""Ablations: the paper's claims re-measured on your data (``mghkit.ablate``, ``mghkit ablate``;
docs/ablations.md). grid.py (cells), data.py (default data, leakage), stats.py (intervals),
run.py (train and score every cell), report.py (tables, claims, plot)."""
