"""Shared test setup: the checkout under test is the one holding this folder, found by `dgnlib.names.repo_root`."""

from __future__ import annotations

from pathlib import Path

import pytest

from dgnlib.names import repo_root


@pytest.fixture(scope="session", autouse=True)
def _tests_import_this_checkout() -> None:
    """Fail fast when `dgnlib` is imported from somewhere else (an installed copy): the tests would check that one."""
    here = Path(__file__).resolve().parent.parent
    if repo_root() != here:
        pytest.exit(f"dgnlib is imported from {repo_root()}, not from this checkout {here}: "
                    "run the tests with this checkout's .venv (make setup)", returncode=2)
