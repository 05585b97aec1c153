"""Reference SLaK ImageNet checkpoint -> mmpretrain ImageClassifier.

Run with ``--help`` for the options; the logic is in
:mod:`mmslak.checkpoint`.
"""
import sys

from mmslak.cli.converters import slak2mmpretrain_main
from mmslak.cli.errors import run_main

if __name__ == '__main__':
    sys.exit(run_main(slak2mmpretrain_main))
