"""Presentation shared by every table: hook points as a collapsed tree (:mod:`.tree`), tables
that fit the console by dropping whole columns (:mod:`.layout`), and HTML for notebooks
(:mod:`.html`). Nothing here knows a report; the tables of each subpackage build on it.

May import: rich, :mod:`hookstats.units`, :mod:`hookstats.points`.
"""

from .html import NotebookDisplay, mimebundle, to_html, to_text
from .layout import Column, FittedTable, Grid
from .tree import Node, auto_depth, build_tree, count_rows, max_level, walk

__all__ = [
    "Column",
    "FittedTable",
    "Grid",
    "Node",
    "NotebookDisplay",
    "auto_depth",
    "build_tree",
    "count_rows",
    "max_level",
    "mimebundle",
    "to_html",
    "to_text",
    "walk",
]
