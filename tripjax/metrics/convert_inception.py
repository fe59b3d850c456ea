"""Converts pytorch-fid's Inception weights (.pth) to tripjax's weight file.

  python -m tripjax.metrics.convert_inception \\
      --torch-weights pt_inception-2015-12-05-6726825d.pth --out inception_fid.npz

Download the .pth once from (the file pytorch-fid itself uses)
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
Reading it needs `torch` (CPU build is enough); nothing else in tripjax does.

Accepted state dicts: the released file (torchvision `Inception3` keys such as
"Mixed_5b.branch1x1.conv.weight", plus an unused 1008-way "fc") and the
state_dict of a `pytorch_fid.inception.InceptionV3(output_blocks=[3])` wrapper
("blocks.2.0.branch1x1.conv.weight", ...).
"""

import argparse
import sys
from typing import Any, Dict, Mapping

from flax import traverse_util
import jax
import numpy as np

from tripjax.metrics import inception

# pytorch_fid.inception.InceptionV3 wraps the trunk in nn.Sequential blocks;
# (block, index) → torchvision attribute name. Pools have no weights.
_WRAPPER_NAMES: dict[tuple[str, ...], str] = {
    ("0", "0"): "Conv2d_1a_3x3", ("0", "1"): "Conv2d_2a_3x3", ("0", "2"): "Conv2d_2b_3x3",
    ("1", "0"): "Conv2d_3b_1x1", ("1", "1"): "Conv2d_4a_3x3",
    ("2", "0"): "Mixed_5b", ("2", "1"): "Mixed_5c", ("2", "2"): "Mixed_5d",
    ("2", "3"): "Mixed_6a", ("2", "4"): "Mixed_6b", ("2", "5"): "Mixed_6c",
    ("2", "6"): "Mixed_6d", ("2", "7"): "Mixed_6e",
    ("3", "0"): "Mixed_7a", ("3", "1"): "Mixed_7b", ("3", "2"): "Mixed_7c",
}
# torch BasicConv2d leaf → (Flax collection, leaf name).
_LEAVES: dict[tuple[str, ...], tuple[str, str]] = {
    ("conv", "weight"): ("params", "kernel"),
    ("bn", "weight"): ("params", "scale"),
    ("bn", "bias"): ("params", "bias"),
    ("bn", "running_mean"): ("batch_stats", "mean"),
    ("bn", "running_var"): ("batch_stats", "var"),
}
_IGNORED_SUFFIXES = ("num_batches_tracked",)
_IGNORED_PREFIXES = ("fc.", "AuxLogits.")


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):  # torch.Tensor, without importing torch.
    value = value.detach().cpu().numpy()
  return np.asarray(value, dtype=np.float32)


def _flax_key(torch_key: str) -> str:
  parts = torch_key.split(".")
  if parts[0] == "blocks":
    if tuple(parts[1:3]) not in _WRAPPER_NAMES:
      raise ValueError(f"unknown pytorch-fid wrapper key {torch_key!r}")
    parts = [_WRAPPER_NAMES[tuple(parts[1:3])]] + parts[3:]
  if tuple(parts[-2:]) not in _LEAVES:
    raise ValueError(f"unexpected state_dict entry {torch_key!r}")
  collection, leaf = _LEAVES[tuple(parts[-2:])]
  return "/".join([collection] + parts[:-2] + [parts[-2], leaf])


def convert_state_dict(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
  """torch state_dict of the FID Inception → Flax variables for `InceptionV3`.

  Args:
    state_dict: name → tensor/array. Conv weights (out, in, kh, kw) become Flax
      kernels (kh, kw, in, out); BatchNorm weight/bias/running stats become
      scale/bias/mean/var.

  Returns:
    {"params": ..., "batch_stats": ...} nested dict of float32 NumPy arrays.

  Raises:
    ValueError: unknown keys, missing layers or wrong shapes.
  """
  flat = {}
  for torch_key, value in state_dict.items():
    if torch_key.endswith(_IGNORED_SUFFIXES) or torch_key.startswith(_IGNORED_PREFIXES):
      continue
    key = _flax_key(torch_key)
    array = _to_numpy(value)
    if key.endswith("/kernel"):
      if array.ndim != 4:
        raise ValueError(f"{torch_key}: expected a 4-D conv weight, got {array.shape}")
      array = np.transpose(array, (2, 3, 1, 0))
    flat[key] = array
  inception._validate_flat(flat, "converted state_dict")  # pylint: disable=protected-access
  return traverse_util.unflatten_dict(flat, sep="/")


def _load_torch_state_dict(path: str) -> Mapping[str, Any]:
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise SystemExit(
        "reading a .pth needs PyTorch: `pip install torch` (the CPU build is enough)"
    ) from error
  state_dict = torch.load(path, map_location="cpu", weights_only=True)
  if isinstance(state_dict, dict) and "state_dict" in state_dict:
    state_dict = state_dict["state_dict"]
  if not isinstance(state_dict, Mapping):
    raise ValueError(f"{path}: expected a state_dict (mapping of tensors), got "
                     f"{type(state_dict).__name__}")
  return state_dict


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--torch-weights", required=True,
                      help="pt_inception-2015-12-05-6726825d.pth (or a pytorch-fid "
                      "InceptionV3 state_dict)")
  parser.add_argument("--out", required=True, help="output .npz or .msgpack")
  args = parser.parse_args(argv)
  variables = convert_state_dict(_load_torch_state_dict(args.torch_weights))
  inception.save_inception_variables(args.out, variables)
  num_values = sum(a.size for a in jax.tree_util.tree_leaves(variables))
  print(f"wrote {args.out}: {num_values:,} values ({inception.WEIGHTS_FORMAT})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
