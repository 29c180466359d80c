"""`dgn` command line (entry point `dgnlib.cli:main`): the implementation lives in `dgnlib.companion.cli`."""

from dgnlib.companion.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
