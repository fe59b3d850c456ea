"""The API reference's sources: every public name of `tripjax.prior` is on its page,
and the README guides it includes are delimited in README.md (`.ci/docs` builds it
with warnings as errors and checks the built inventory)."""
import pathlib
import re

import tripjax.prior

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_DIRECTIVE = re.compile(r"^\.\. (?:auto\w+|py:\w+)::\s+(?:tripjax\.prior\.)?(\w+)\s*$",
                        flags=re.M)


def test_every_name_of_tripjax_prior_is_on_its_api_page():
  names = _DIRECTIVE.findall((DOCS / "api" / "prior.rst").read_text())
  assert len(names) == len(set(names)), "a name is documented twice"
  assert sorted(set(tripjax.prior.__all__) - set(names)) == []
  assert sorted(set(names) - set(tripjax.prior.__all__)) == []


def test_the_included_readme_guides_are_delimited_once_in_readme():
  readme = (ROOT / "README.md").read_text()
  guides = sorted((DOCS / "guide").glob("*.md"))
  assert len(guides) >= 5
  for guide in guides:
    (start,) = re.findall(r":start-after: (<!-- docs:\w+ -->)", guide.read_text())
    (end,) = re.findall(r":end-before: (<!-- /docs:\w+ -->)", guide.read_text())
    assert readme.count(start) == 1 and readme.count(end) == 1, guide.name
    assert readme.index(start) < readme.index(end), guide.name
    assert f"guide/{guide.stem}" in (DOCS / "index.md").read_text()


def test_the_docs_figures_are_the_ones_readme_shows():
  for image in re.findall(r"\]\((docs/[^)]+\.png)\)", (ROOT / "README.md").read_text()):
    assert (ROOT / image).is_file(), image


def test_plain_text_docstrings_become_rst_that_shows_them_as_written():
  """docs/conf.py's hook: `*` and `|` are escaped outside code spans and after a bullet
  marker, an indented block under a plain line is a literal block, Google sections and
  bullets are left to napoleon and docutils."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
  conf = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(conf)
  lines = ["Shapes (*shape, n) and p(y | z), not `a*b|c`; the table:",
           "",
           "  eq. 1   p(s) ∝ Tr ∏_j Q_j[s_j]",
           "          normalizer Z",
           "After it.",
           "* a bullet, *not* escaped at its marker",
           "  continued.",
           "",
           "Args:",
           "  x: (..., n) values.",
           "    More about x."]
  assert conf.plain_text_to_rst(lines) == [
      r"Shapes (\*shape, n) and p(y \| z), not `a*b|c`; the table:",
      "", "::", "",
      "",
      "  eq. 1   p(s) ∝ Tr ∏_j Q_j[s_j]",
      "          normalizer Z",
      "",
      "After it.",
      r"* a bullet, \*not\* escaped at its marker",
      "  continued.",
      "",
      "Args:",
      "  x: (..., n) values.",
      "    More about x."]


def test_readme_builds_the_docs_as_ci_does():
  """README's docs command and `.ci/docs` install the same extra and run the same
  strict build into the same folder."""
  readme = (ROOT / "README.md").read_text()
  (command,) = [block for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
                if "sphinx" in block]
  ci = (ROOT / ".ci" / "docs").read_text()
  build = "python -m sphinx -W --keep-going"
  for piece in ('pip install -e ".[docs]"', build, "-b html docs docs/_build/html"):
    assert piece in command and piece in ci.replace(" --quiet", "").replace(" -q", ""), piece
