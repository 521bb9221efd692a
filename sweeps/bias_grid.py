#!/usr/bin/env python
"""The β × training-bias study: `python sweeps/bias_grid.py --help`. Declared in sweeps/studies/bias_grid.py and run
by the generic runner (sweeps/study_runner.py); this file is the documented command."""
import sys

from sweeps.studies.bias_grid import STUDY
from sweeps.study_runner import main as run_study


def main(argv=None) -> int:
    return run_study(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
