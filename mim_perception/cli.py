"""``mim-perception <verb>``: one entry point; each verb lives in its own module.

A verb module exposes ``register(subparsers)`` which adds its parser and sets ``func`` to a callable
``(args) -> int``. Modules are imported lazily so ``mim-perception --help`` stays fast and a verb's
heavy dependencies (torch, rclpy) load only when that verb runs.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

from mim_perception import __version__
from mim_perception.core.errors import MimPerceptionError

# verb -> module path; order is the order shown in --help
VERBS: dict[str, str] = {
    "run": "mim_perception.ros.runner",
    "replay": "mim_perception.ros.replay",
    "record": "mim_perception.ros.record",
    "bag-from-video": "mim_perception.bags.from_video",
    "bag-info": "mim_perception.bags.info",
    "evaluate-tracking": "mim_perception.tools.evaluate_tracking",
    "synth": "mim_perception.sim.synth_cli",
    "simgen": "mim_perception.sim.simgen",
    "pretrain": "mim_perception.training.pretrain",
    "finetune": "mim_perception.training.finetune",
    "export": "mim_perception.tools.export",
    "import-model": "mim_perception.tools.import_model",
    "pseudo-label": "mim_perception.tools.pseudo_label",
    "evaluate-robustness": "mim_perception.tools.evaluate_robustness",
    "evaluate-real": "mim_perception.tools.evaluate_real",
    "evaluate": "mim_perception.tools.evaluate",
    "demo": "mim_perception.tools.demo",
    "docs": "mim_perception.tools.docs",
}


def build_parser(verbs: dict[str, str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mim-perception", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mim-perception {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, module in (verbs or VERBS).items():
        importlib.import_module(module).register(sub, verb)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the module of the verb asked for (fast start-up, no unrelated heavy imports).
    chosen = {argv[0]: VERBS[argv[0]]} if argv and argv[0] in VERBS else None
    parser = build_parser(chosen)
    args = parser.parse_args(argv)
    args.command_line = "mim-perception " + shlex.join(argv)   # recorded in result files next to their numbers
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MimPerceptionError as e:
        print(f"mim-perception {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
