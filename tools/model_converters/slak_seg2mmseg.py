"""SLaK UperNet checkpoint of mmseg 0.x -> mmseg 1.x.

Run with ``--help`` for the options; the logic is in
:mod:`mmslak.checkpoint`.
"""
import sys

from mmslak.cli.converters import slak_seg2mmseg_main
from mmslak.cli.errors import run_main

if __name__ == '__main__':
    sys.exit(run_main(slak_seg2mmseg_main))
