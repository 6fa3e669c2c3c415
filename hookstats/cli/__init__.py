"""The ``hookstats`` command line (also ``python -m hookstats``): :func:`main`, its parser, the
sub-commands, and how model specs and shapes are read.

May import: every hookstats subpackage (the commands import what they run lazily).
"""

from .parser import build_parser, main
from .specs import CLIError, build_from_spec, load_factory, parse_shape

__all__ = ["CLIError", "build_from_spec", "build_parser", "load_factory", "main", "parse_shape"]
