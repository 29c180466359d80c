"""`python -m dgnlib ...`: the same commands as `dgn ...`."""

from dgnlib.cli import main

raise SystemExit(main())
