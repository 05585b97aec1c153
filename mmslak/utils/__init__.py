"""Helpers of the command-line tools (not training-engine code)."""
