#!/usr/bin/env bash
# Replay issue 19's move at the root of a checkout derived from 3e2a7f4 (see README.md in this folder).
set -euo pipefail
KIT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PYTHON:-.venv/bin/python}"
"$PY" "$KIT/move.py"                      # the script: moves, rewrites, vocabulary, ruff --fix (F401, I); fails loudly
git commit -qm "Move dgnlib into wings (core, data, engine, experiments, companion) with names.py (issue 19, move.py)"
git apply -3 "$KIT/hand.patch"            # the hand edits: one repo_root, the tooling line, conftest, architecture test, docs
"$PY" -m ruff check dgnlib tests bench
echo "move.sh: moved; review 'git status', then commit the hand edits and run the unit tests"
