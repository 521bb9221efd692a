"""Data, metrics and the per-study trial functions. Imports `models`; never `sweeps` or `analysis`."""
