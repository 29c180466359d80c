"""`python -m dgnlib ...`: the same commands as `dgn ...`."""

from dgnlib.companion.cli import main

raise SystemExit(main())
