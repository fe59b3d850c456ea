"""Checks a built API reference: every name of `tripjax.prior.__all__` is in it.

`python docs/check_inventory.py docs/_build/html/objects.inv` (run by `.ci/docs` after
the build) exits 1 naming the missing ones.
"""
import pathlib
import sys

from sphinx.util.inventory import InventoryFile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tripjax.prior  # noqa: E402  pylint: disable=wrong-import-position


def main(path: str) -> int:
  with open(path, "rb") as stream:
    inventory = InventoryFile.load(stream, "", lambda base, uri: uri)
  by_type = getattr(inventory, "data", inventory)  # A dict, or (Sphinx 8.2) its holder.
  documented = {name for entries in by_type.values() for name in entries}
  missing = sorted(name for name in tripjax.prior.__all__
                   if f"tripjax.prior.{name}" not in documented)
  if missing:
    print(f"Not in the API reference ({path}): {', '.join(missing)}")
    return 1
  print(f"API reference: all {len(tripjax.prior.__all__)} names of tripjax.prior.__all__.")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1]))
