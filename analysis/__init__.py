"""Reads sweep results (Parquet or MLflow) and turns them into heatmaps, tables and reports.

Imports none of models/trainables/sweeps: it works on a laptop against a cluster's MLflow server.
"""
