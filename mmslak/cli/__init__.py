"""Command-line front ends shared by ``tools/``: argument parsing, exit
codes, progress bars, the converter and train/test entry logic.

The top layer of the package: nothing in the library imports it, and
``import mmslak`` does not import it (``tools/`` import it explicitly).
"""
