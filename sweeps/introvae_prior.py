#!/usr/bin/env python
"""Soft-IntroVAE with learned priors on the 2D benchmark: `python sweeps/introvae_prior.py --help`. Declared in
sweeps/studies/introvae_2d.py and run by the generic runner (sweeps/study_runner.py); this file is the documented
command."""
import sys

from sweeps.studies.introvae_2d import STUDY
from sweeps.study_runner import main as run_study


def main(argv=None) -> int:
    return run_study(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
