"""Command line of the companion package: ``python -m companion <command>``."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("doctor", help="check that this environment can run the book")
    run = commands.add_parser(
        "run", help="run an experiment and save its results as artefacts (resumable)",
        description="Run an experiment module's resumable job (its run_artefact function). Results "
        "are saved per method and seed; rerunning skips those already saved.",
    )
    run.add_argument("experiment", help="experiment module name, e.g. protein")
    run.add_argument("--profile", choices=("ci", "full"), help="default: $COMPANION_PROFILE, else full on a GPU, else ci")
    run.add_argument("--out", type=Path, help="output folder (default: artefacts/<experiment>/<profile>/ of the checkout)")
    run.add_argument("--seeds-at-once", type=_positive_int, metavar="N",
                     help="train N seeds together (default: all; use 1 on a CPU to save each seed as it finishes)")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from companion import doctor

        return doctor.main()
    if args.command == "run":
        return _run(parser, args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover (argparse rejects it first)
    return 2


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """Dispatch to ``companion.experiments.<name>.run_artefact``: defining it registers an experiment."""
    import companion.experiments as package

    known = sorted(m.name for m in pkgutil.iter_modules(package.__path__))
    name = args.experiment.replace("-", "_")
    if name not in known:
        parser.error(f"unknown experiment {args.experiment!r}; experiment modules: {', '.join(known)}")
    if args.profile:  # the flag wins, also for what reads the profile itself (progress bars)
        from companion import profile

        os.environ[profile.ENV_VAR] = args.profile
    module = importlib.import_module(f"companion.experiments.{name}")
    if not hasattr(module, "run_artefact"):
        parser.error(f"experiment {args.experiment!r} has no resumable run (no run_artefact function)")
    module.run_artefact(args.profile, out=args.out, seeds_at_once=args.seeds_at_once)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
