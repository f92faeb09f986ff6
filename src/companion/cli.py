"""Command line of the companion package: ``python -m companion <command>``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    commands.add_parser("doctor", help="check that this environment can run the book")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        from companion import doctor

        return doctor.main()
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover (argparse rejects it first)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
