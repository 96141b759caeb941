"""Sparsification methods, one file each, behind the hooks of ``base.Method``.

``catalog.METHODS`` holds a record per method (torch-free: name, schema, class, papers); ``build.build_method``
builds the one a config names.
"""

from .catalog import METHODS, register_method

__all__ = ["METHODS", "register_method"]
