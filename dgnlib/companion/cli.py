"""`dgn` command line: reproduce the figures, prepare notebooks for nbval, render the reading copy."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from dgnlib import __version__
from dgnlib.companion.fsio import Interrupted, signals_raise
from dgnlib.companion.layout import DEFAULT_TIMEOUT_S, InputError, Layout
from dgnlib.names import EXIT_BAD_INPUT

EPILOG = """exit status: 0 ok, 1 a notebook failed (an error, a dead kernel, --timeout, a commit the disk refused),
2 bad input (profile, parameter, --only, environment variable, a corrupt manifest, another run holding the
checkout), 130 interrupted (SIGINT), 143 terminated (SIGTERM).
Profiles other than paper write to build/figures/<profile>/ unless --publish; paper publishes to figures/."""


def _common(parser: argparse.ArgumentParser, default_profile: str) -> None:
    """Options shared by reproduce and prepare."""
    parser.add_argument("--profile", default=default_profile,
                        help=f"sizes to run with, from profiles/<profile>.yaml (default: {default_profile})")
    parser.add_argument("--only", metavar="IDS", help="comma-separated notebook ids or names, e.g. 03,05")
    parser.add_argument("--set", dest="sets", action="append", metavar="KEY=VALUE", default=[],
                        help="override a parameter for this run (value read as plain YAML data); NN.KEY=VALUE for "
                             "one notebook; repeatable")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `dgn`."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="dgn", description="Regenerate the figures of the Deep Gated Networks "
                                     "companion.", epilog=EPILOG, formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"dgn (dgnlib) {__version__}")
    parser.add_argument("--root", help="checkout holding notebooks/, profiles/, figures/ (default: this one); "
                                       "its own dgnlib/, when it has one, is what the kernels import")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    rep = commands.add_parser("reproduce", help="run the notebooks; write figures, MANIFEST.json and the table",
                              epilog=EPILOG, formatter_class=formatter)
    _common(rep, "quick")
    rep.add_argument("--publish", action=argparse.BooleanOptionalAction, default=None,
                     help="write to the committed figures/, executed/, runs/ and README table (default: only for "
                          "--profile paper)")
    rep.add_argument("--force", action="store_true", help="rerun notebooks even when the cache says unchanged")
    rep.add_argument("--keep-going", action="store_true", help="run the other notebooks after one fails")
    rep.add_argument("--jobs", type=int, default=1, metavar="N", help="notebooks run at once (default 1)")
    rep.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                     help="stop a notebook that runs longer than this and report it failed (default "
                          f"{DEFAULT_TIMEOUT_S:g} s, one day; 0: no limit)")
    rep.add_argument("--wait", action="store_true", help="wait for another run in this checkout instead of exiting 2")
    rep.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="per-cell progress bars (default: on when stderr is a terminal)")
    rep.add_argument("--scheduler", metavar="ADDRESS", default=None,
                     help="train the sweeps on a Dask cluster, e.g. tcp://127.0.0.1:8786 (default: $DGN_SCHEDULER, "
                          "else in this process)")
    rep.add_argument("--workers", type=int, default=None, metavar="N",
                     help="processes that train a sweep's groups side by side on this machine, one thread each "
                          "(default: $DGN_WORKERS, else the cores divided by --jobs); the numbers do not depend on it")

    prep = commands.add_parser("prepare", help="write the parameterised notebooks (not executed) for nbval",
                               epilog=EPILOG, formatter_class=formatter)
    _common(prep, "smoke")
    prep.add_argument("--dest", default="build/nbval",
                      help="folder for the notebooks; their outputs go to <dest>/figures (default build/nbval)")

    ver = commands.add_parser("verify", help="re-derive the published figures from runs/ (read-only) and compare "
                              "them with figures/ byte for byte; audit the run store",
                              epilog="exit status: 0 every compared file identical and the run store sound, 1 a "
                              "figure differs or fails or a store file is bad, 2 bad input.",
                              formatter_class=formatter)
    ver.add_argument("--only", metavar="IDS", help="comma-separated figure ids, e.g. 06,08")
    ver.add_argument("--quick", action="store_true",
                     help="only the figures that re-derive in seconds (the set CI checks)")
    ver.add_argument("--record", action="store_true",
                     help="after a fully green run on a clean checkout, write `verified` and `runs_read` into the "
                          "verified figures' MANIFEST entries")

    ren = commands.add_parser("render", help="convert the executed notebooks to HTML under build/html/")
    ren.add_argument("--profile", default=None,
                     help="render build/executed/<profile>/ (default: executed/, the committed run)")
    ren.add_argument("--from", dest="source", metavar="FOLDER", default=None,
                     help="folder of executed notebooks to render, e.g. build/executed/quick")
    ren.add_argument("--dest", default=None, help="output folder (default build/html)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `dgn` with `argv` (default: the process arguments); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2)
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    if args.root is not None and not Path(args.root).is_dir():
        print(f"error: --root {args.root}: {'not a folder' if Path(args.root).exists() else 'no such folder'}; name a "
              "checkout holding notebooks/ and profiles/", file=sys.stderr)
        return EXIT_BAD_INPUT
    layout = Layout.at(args.root)
    try:
        if args.command == "reproduce":
            from dgnlib.companion.reproduce import reproduce

            return reproduce(layout, args.profile, args.only, args.sets, publish=args.publish, force=args.force,
                             keep_going=args.keep_going, jobs=args.jobs, progress=args.progress, wait=args.wait,
                             scheduler=args.scheduler, workers=args.workers,
                             timeout=args.timeout)
        with signals_raise():
            if args.command == "verify":
                from dgnlib.companion.verify import verify

                return verify(layout, args.only, quick=args.quick, record_results=args.record)
            if args.command == "prepare":
                from dgnlib.companion.prepare import prepare

                return prepare(layout, args.profile, args.dest, args.only, args.sets)
            from dgnlib.companion.render import render

            return render(layout, args.profile, args.dest, source=args.source)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Interrupted as exc:
        print(f"interrupted ({exc})", file=sys.stderr)
        return exc.exit_status
