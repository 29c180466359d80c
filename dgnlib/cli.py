"""`dgn` command line: reproduce the figures, prepare notebooks for nbval, render the reading copy."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dgnlib.report import PROFILES
from dgnlib.runner import EXIT_BAD_INPUT, EXIT_INTERRUPTED, InputError, Layout

EPILOG = """exit status: 0 ok, 1 a notebook failed, 2 bad input (profile file, parameter, --only), 130 interrupted.
Relative paths (--dest) are taken from the repository root, whatever the working directory."""


def _common(parser: argparse.ArgumentParser, default_profile: str | None) -> None:
    """Options shared by reproduce and prepare."""
    parser.add_argument("--profile", choices=PROFILES, default=default_profile,
                        help=f"sizes to run with, from profiles/<profile>.yaml (default: {default_profile})")
    parser.add_argument("--only", metavar="IDS", help="comma-separated notebook ids or names, e.g. 03,05")
    parser.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE", default=[],
                        help="override a parameter for this run (value read as YAML); NN.KEY=VALUE for one "
                             "notebook; repeatable")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `dgn`."""
    parser = argparse.ArgumentParser(
        prog="dgn", description="Regenerate the figures of the Deep Gated Networks companion.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", help="repository root holding notebooks/, profiles/, figures/ (default: this one)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    rep = commands.add_parser("reproduce", help="run the notebooks and regenerate figures/ and its MANIFEST.json",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(rep, "quick")
    rep.add_argument("--force", action="store_true", help="rerun notebooks even when the cache says unchanged")
    rep.add_argument("--keep-going", action="store_true", help="run the other notebooks after one fails")
    rep.add_argument("--jobs", type=int, default=1, metavar="N", help="notebooks run in parallel (default 1)")
    rep.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="per-cell progress bars (default: on when stderr is a terminal)")

    prep = commands.add_parser("prepare", help="write the parameterised notebooks (not executed) for nbval",
                               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(prep, "smoke")
    prep.add_argument("--dest", default="build/nbval",
                      help="folder for the notebooks; their outputs go to <dest>/figures (default build/nbval)")

    ren = commands.add_parser("render", help="convert the executed notebooks to HTML under build/html/")
    ren.add_argument("--profile", choices=PROFILES, default=None,
                     help="whose executed notebooks to render (default: the latest run profile)")
    ren.add_argument("--dest", default=None, help="output folder (default build/html)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `dgn` with `argv` (default: the process arguments); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        layout = Layout.at(args.root)
        if args.command == "reproduce":
            from dgnlib.runner import reproduce

            return reproduce(layout, args.profile, args.only, args.sets, force=args.force,
                             keep_going=args.keep_going, jobs=args.jobs, progress=args.progress)
        if args.command == "prepare":
            from dgnlib.runner import prepare

            return prepare(layout, args.profile, args.dest, args.only, args.sets)
        from dgnlib.render import render

        return render(layout, args.profile, args.dest)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
