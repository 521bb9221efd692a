"""The registry of studies: every module of this package that declares a `STUDY` (sweeps/study.py).

A new study is one module here (and its trainable); the generic runner, tracking, progress lines, results table and
report need no edit.
"""
import importlib
import pkgutil

from sweeps.study import Study


def all_studies() -> dict[str, Study]:
    """Study name -> declaration, for every study module in this package."""
    studies = {}
    for module_info in pkgutil.iter_modules(__path__):
        study = getattr(importlib.import_module(f"{__name__}.{module_info.name}"), "STUDY", None)
        if isinstance(study, Study):
            studies[study.name] = study
    return studies
