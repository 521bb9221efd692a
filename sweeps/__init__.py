"""Sweep scripts (one per study) and the shared machinery: runner, presets, tracking. Ray and MLflow live here."""
