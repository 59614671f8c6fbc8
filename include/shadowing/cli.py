"""`python -m shadowing …`: the same core as the DAGs, outside Airflow.

Each domain contributes its subcommands through a ``register(subparsers)`` function in its own ``cli``
module, so this file only wires them; heavy imports happen inside the handlers, never here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from shadowing.errors import ShadowingError

# Domains that contribute subcommands; each module exposes register(subparsers).
_COMMAND_MODULES = (
    "shadowing.world.cli",
    "shadowing.capacity.cli",
    "shadowing.dependencies.cli",
    "shadowing.blueprint.cli",
    "shadowing.failover.cli",
    "shadowing.warehouse.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shadowing", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module must not be hidden
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.handler(args) or 0)
    except ShadowingError as exc:
        print(f"shadowing {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
