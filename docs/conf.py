"""Sphinx configuration: Markdown pages (MyST) and the API reference from the docstrings (autodoc).

Built by ``make docs`` with warnings as errors. The package is imported from this checkout.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import beanstalkc_fast  # noqa: E402

project = "beanstalkc_fast"
author = "beanstalkc_fast developers"
copyright = "beanstalkc_fast developers"
release = version = beanstalkc_fast.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",   # the docstrings' Args:/Returns:/Raises: sections
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "requirements.txt"]

# Every cross-reference must resolve (no intersphinx: the build needs no network). A standard
# library type in a signature may need an entry here, e.g. ("py:class", "socket.socket").
nitpicky = True
nitpick_ignore = [
    # internal bases and helpers that public asyncio classes show in their signatures
    ("py:class", "beanstalkc_fast.asyncio._Connecting"),
    ("py:class", "beanstalkc_fast.commands.Commands"),
    ("py:class", "beanstalkc_fast.commands.YamlOption"),
    ("py:class", "beanstalkc_fast.commands.PipelineCommands"),
    ("py:class", "beanstalkc_fast.worker._Settings"),     # both Workers' kept settings
    # the asyncio Connection's ssl= (no intersphinx)
    ("py:class", "ssl.SSLContext"),
]
# "Connection" in a type hint names the sync and the asyncio class alike; Sphinx would call that an
# ambiguous cross-reference (ref.python) although both targets are documented.
suppress_warnings = ["ref.python"]

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# job.py annotates its conn as "Connection" (a TYPE_CHECKING import): the sync one
autodoc_type_aliases = {"Connection": "beanstalkc_fast.Connection"}
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = "beanstalkc_fast %s" % release
html_static_path: list = []
