"""Command line of the companion package: ``python -m companion <command>``.

Expected errors (a bad option, a missing data file, an output folder in use, a diverged run) are
printed as one line, ``python -m companion: error: ...``, and the command exits with status 1;
``COMPANION_TRACEBACK=1`` shows the full traceback instead. Ctrl-C exits with status 130 and says
how to resume.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["main", "EXPERIMENTS", "EXPECTED_ERRORS", "TRACEBACK_ENV_VAR"]

#: Set to 1 to see the traceback of an expected error instead of its one-line message.
TRACEBACK_ENV_VAR = "COMPANION_TRACEBACK"
#: What bad input and a broken environment raise, each with an actionable message (the package's
#: checks raise these; RuntimeError covers a folder in use and JAX failing to start its device).
EXPECTED_ERRORS = (ValueError, OSError, FloatingPointError, ImportError, RuntimeError)

#: ``python -m companion run <name> [options]``: each experiment's module, whose ``main(argv)``
#: parses the options and runs it. One line per experiment.
EXPERIMENTS = {
    "protein": "companion.experiments.protein",
    "protein-ntk": "companion.experiments.protein_ntk",
    "faces": "companion.experiments.faces",
    "toy": "companion.experiments.toy",
    "bridge": "companion.experiments.bridge",
    "bridge-seeds": "companion.experiments.bridge_seeds",
    "transformer": "companion.experiments.transformer",
    "transformer-ablation": "companion.experiments.transformer_ablation",
}


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line) and run the command; return its exit status."""
    parser = argparse.ArgumentParser(prog="python -m companion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("doctor", help="check that this environment can run the book")
    run = commands.add_parser("run", help="run an experiment of the book and save its results")
    run.add_argument("experiment", choices=sorted(EXPERIMENTS), help="which experiment")
    run.add_argument("options", nargs=argparse.REMAINDER, help="its options (see: run <experiment> --help)")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from companion import doctor

        return doctor.main()
    try:
        return importlib.import_module(EXPERIMENTS[args.experiment]).main(args.options)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; saved runs are kept, run the same command again to resume",
              file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as error:
        if os.environ.get(TRACEBACK_ENV_VAR, "").strip() not in ("", "0"):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{parser.prog}: error: {message} (${TRACEBACK_ENV_VAR}=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
