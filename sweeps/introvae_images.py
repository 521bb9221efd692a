#!/usr/bin/env python
"""Soft-IntroVAE with learned priors on images: `python sweeps/introvae_images.py --help`. Declared in
sweeps/studies/introvae_images.py and run by the generic runner (sweeps/study_runner.py)."""
import sys

from sweeps.studies.introvae_images import STUDY
from sweeps.study_runner import main as run_study


def main(argv=None) -> int:
    return run_study(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
