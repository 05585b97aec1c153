"""SLaK Cascade Mask R-CNN checkpoint of mmdet 2.x -> mmdet 3.x.

Run with ``--help`` for the options; the logic is in
:mod:`mmslak.checkpoint`.
"""
import sys

from mmslak.cli.converters import slak_det2mmdet_main
from mmslak.cli.errors import run_main

if __name__ == '__main__':
    sys.exit(run_main(slak_det2mmdet_main))
