r"""Generate images given any subset of attributes from a `train.cvae` run.

  python -m train.cvae_sample --workdir runs/cvae --attr digit=3
  python -m train.cvae_sample --workdir runs/cvae --attr even=1 --attr at_least_5=0 \
      --num 64 --out grid.png
  python -m train.cvae_sample --workdir runs/celeba_cvae --attr Male=1 --attr Eyeglasses=1

Attributes not given are marginalized: z ~ p(z | y_given) by exact conditional
sampling from the joint TRIP (the baselines draw z ~ N(0, I) and give their decoder
"unknown" for them). No --attr: unconditional samples. An unknown name or
value is an error that lists the valid ones. Writes a PNG grid of the decoder means
(default: <workdir>/samples/<attributes>.png).
"""
import os
import sys

import jax

from tripjax import conditional
from tripjax import data as data_lib
from tripjax.training import cli
from tripjax.training import cvae
from tripjax.training import image_grid
from tripjax.training import workdirs


def main(argv=None) -> int:
  parser = cli.make_parser("train.cvae_sample", __doc__, config_help="The run's config "
                           "(default: the one saved in --workdir).",
                           workdir_help="The workdir of a train.cvae run.")
  parser.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE",
                      help="A requested attribute; repeat for several (e.g. --attr "
                      "digit=3, --attr Male=1 --attr Eyeglasses=1).")
  parser.add_argument("--num", type=int, default=64, help="Number of images.")
  parser.add_argument("--out", help="PNG path (default: "
                      "<workdir>/samples/<attributes>.png).")
  parser.add_argument("--step", type=int, help="Checkpoint step (default: the newest).")
  parser.add_argument("--seed", type=int, default=0, help="Sampling seed.")
  parser.add_argument("--columns", type=int, help="Images per row of the grid "
                      "(default: about the square root of --num).")

  def run():
    args, config = cli.parse(parser, argv, config_required=False)
    if config is None:
      config = workdirs.load_config(args.workdir)
    cvae.validate_config(config)
    specs = data_lib.attribute_specs(config.data.name)
    try:
      request = conditional.parse_attribute_request(specs, args.attr)
    except ValueError as error:
      raise cli.UsageError(f"--attr: {error}") from None
    if args.num < 1 or (args.columns is not None and args.columns < 1):
      raise cli.UsageError("--num and --columns must be positive.")
    cli.start(args, config, cvae.validate_config)
    sampler = cvae.load_sampler(args.workdir, step=args.step, config=config)
    try:
      images = sampler.sample(jax.random.PRNGKey(args.seed), request, args.num)
    except ValueError as error:  # a request of probability zero under the prior
      raise cli.UsageError(f"--attr: {error}") from None
    described = conditional.format_attribute_request(specs, request)
    out = args.out or os.path.join(args.workdir, "samples", (
        described.replace(", ", "_") or "unconditional") + ".png")
    image_grid.save_image_grid(images, out, num_columns=args.columns,
                               scale=image_grid.display_scale(images.shape[1:]))
    print(f"{args.num} samples given {described or 'no attribute (unconditional)'} "
          f"from step {sampler.position.step} of {args.workdir}: {out}")

  return cli.main(run)


if __name__ == "__main__":
  sys.exit(main())
