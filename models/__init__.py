"""Pure-torch networks, priors, VAEs and objectives. No Ray, no MLflow, no file I/O."""
