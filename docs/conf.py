"""Sphinx configuration of tripjax's API reference (`python -m sphinx -W -b html docs
docs/_build/html`; README's "API reference" says how to install the docs extra)."""
import os
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Importing the documented modules imports JAX: the CPU is enough to read docstrings.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

project = "tripjax"
author = "tripjax contributors"
copyright = "tripjax contributors"  # pylint: disable=redefined-builtin

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Google style docstrings (Args/Returns/Raises/Attributes).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
autodoc_default_options = {"show-inheritance": False}

# README's headings as link targets (`#quickstart`) in the included guides.
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = "tripjax"

# The README sections the guides include start at its "##" level (their page title).
suppress_warnings = ["myst.header"]

# tripjax's docstrings are plain text with Google sections (napoleon reads those) and
# math written out: `(*shape, n)`, `||x||`, `p(y | z)`, and equations or tables indented
# under the line that introduces them. None of it is reStructuredText markup, so before
# napoleon runs: `*` and `|` are escaped, and an indented block under a plain line
# (outside the Google sections) becomes a literal block, shown as written.
_SECTION = re.compile(
    r"^(Args|Arguments|Attributes|Example|Examples|Keyword Args|Methods|Note|Notes|"
    r"Raises|References|Returns|Return|See Also|Todo|Warning|Warnings|Yields|Yield):\s*$")
_BULLET = re.compile(r"^([*-]|\d+\.) ")
_MARKUP = re.compile(r"(?<!\\)([*|])")


def _escape(line: str) -> str:
  """`*` and `|` escaped outside ``code`` spans (`name` is the default role), but not
  the marker of a bullet."""
  bullet = _BULLET.match(line.lstrip())
  start = len(line) - len(line.lstrip()) + (bullet.end() if bullet else 0)
  parts = line[start:].split("`")
  parts[::2] = [_MARKUP.sub(r"\\\1", part) for part in parts[::2]]
  return line[:start] + "`".join(parts)


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip())


def plain_text_to_rst(lines: list[str]) -> list[str]:
  """The docstring lines as reStructuredText that renders them as written."""
  out: list[str] = []
  in_section = in_literal = False
  for i, line in enumerate(lines):
    if not line.strip():
      out.append(line)
      continue
    indent = _indent(line)
    if indent == 0:
      if in_literal:
        out.append("")  # The literal block ends.
      in_literal = False
      in_section = bool(_SECTION.match(line))
    if in_literal:
      out.append(line)
      continue
    out.append(_escape(line))
    following = next((later for later in lines[i + 1:] if later.strip()), "")
    if (indent == 0 and not in_section and following
        and _indent(following) > 0 and not _BULLET.match(line)):
      out.extend(["", "::", ""])  # What follows is shown as written.
      in_literal = True
  return out


def _process_docstring(app, what, name, obj, options, lines):  # pylint: disable=unused-argument
  lines[:] = plain_text_to_rst(lines)


def setup(app):
  # Before napoleon (priority 500), which turns the Google sections into fields.
  app.connect("autodoc-process-docstring", _process_docstring, priority=400)
