"""Every speed table on one accelerator (GPU/TPU) in one command, a few minutes:

  python -m benchmarks.accelerator

1. `benchmarks.prior`: log_prob, log_prob + grad, posterior_weights and sample at the
   paper's setting (d = 100, N = 10, m = 20) for B = 128 and B = 4096, and d = 1000;
2. `benchmarks.vae_step`: the VAE train step at 64x64x3, batch 128, per prior;
3. `benchmarks.gan_step`: the GAN critic and generator (+ prior) updates, batch 64.

Each part runs in its own process (a fresh JAX runtime) with few repeats; a part that
fails is reported and the others still run. On a CPU it runs too (slowly): use
`--quick` there to check the command.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

PARTS = {
    "prior (paper, B = 128 and 4096)": [
        ["benchmarks.prior", "--devices", "1", "--settings", "paper", "--repeats", "20"],
        ["benchmarks.prior", "--devices", "1", "--settings", "paper", "--batch", "4096",
         "--repeats", "20"],
        ["benchmarks.prior", "--devices", "1", "--settings", "large", "--repeats", "10"]],
    "VAE step (batch 128)": [["benchmarks.vae_step", "--devices", "1", "--repeats", "5"]],
    "GAN updates (batch 64)": [["benchmarks.gan_step", "--devices", "1",
                                "--repeats", "5"]],
}
QUICK = {"benchmarks.prior": ["--batch", "16", "--repeats", "3"],
         "benchmarks.vae_step": ["--batch", "4", "--repeats", "1", "--priors", "trip"],
         "benchmarks.gan_step": ["--batch", "4", "--repeats", "1",
                                 "--variants", "trip F", "trip L"]}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true",
                      help="tiny batches and one repeat: checks the command, not speed")
  args = parser.parse_args(argv)
  failed = []
  for title, commands in PARTS.items():
    print(f"\n## {title}\n", flush=True)
    for module, *flags in commands:
      if args.quick:
        flags = _without_values(flags, ("--repeats", "--batch")) + QUICK[module]
      start = time.perf_counter()
      result = subprocess.run([sys.executable, "-m", module, *flags], check=False)
      print(f"({module} {' '.join(flags)}: {time.perf_counter() - start:.0f} s)",
            flush=True)
      if result.returncode:
        failed.append(module)
        if args.quick:
          break
  if failed:
    print(f"\nFailed: {', '.join(failed)}", file=sys.stderr)
  return 1 if failed else 0


def _without_values(flags: list[str], names: tuple[str, ...]) -> list[str]:
  """`flags` without the given options and their values."""
  kept, skip = [], False
  for flag in flags:
    if skip:
      skip = False
    elif flag in names:
      skip = True
    else:
      kept.append(flag)
  return kept


if __name__ == "__main__":
  raise SystemExit(main())
