"""mmslak checkpoint -> reference SLaK layout ({'model': state_dict}).

Run with ``--help`` for the options; the logic is in
:mod:`mmslak.checkpoint`.
"""
import sys

from mmslak.cli.converters import mmslak2slak_main
from mmslak.cli.errors import run_main

if __name__ == '__main__':
    sys.exit(run_main(mmslak2slak_main))
