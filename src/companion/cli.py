"""Command line of the companion package: ``python -m companion <command>``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "EXPERIMENTS"]

#: ``python -m companion run NAME``: the module of each experiment whose ``run_and_save(profile)``
#: writes its result files (one entry per experiment; tools/full-experiments.txt lists them).
EXPERIMENTS = {
    "transformer": "companion.experiments.transformer",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("doctor", help="check that this environment can run the book")
    run = commands.add_parser("run", help="run one experiment and write its result files")
    run.add_argument("experiment", choices=sorted(EXPERIMENTS))
    run.add_argument("--profile", choices=("ci", "full"), default="full", help="sizes to use (default: full)")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from companion import doctor

        return doctor.main()
    if args.command == "run":
        import importlib
        import os

        os.environ["COMPANION_PROFILE"] = args.profile  # progress bars and defaults follow the profile
        importlib.import_module(EXPERIMENTS[args.experiment]).run_and_save(args.profile)
        return 0
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover (argparse rejects it first)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
