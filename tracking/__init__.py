"""Where a sweep's results go and how MLflow holds them: the results files and the sweep record, the journal, the
MLflow run layout, the parent run, the live writer process and `sync`.

Used by sweeps (while a sweep runs) and by analysis (afterwards). Imports none of models/trainables/sweeps/analysis
and no Ray, so everything here also works on a laptop against a cluster's results or MLflow server.
"""
