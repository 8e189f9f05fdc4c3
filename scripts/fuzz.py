"""Longer fuzzing runs (issue 8): the Hypothesis targets of tests/test_fuzz.py with random examples.

    python scripts/fuzz.py [--minutes 10] [--examples 5000] [-k snapshot]

CI runs the same targets briefly and derandomized (the ``ci`` profile); this runs the ``long``
profile (random, ``--examples`` per target) under a wall-clock limit, and prints pytest's summary.
Hypothesis keeps the failing examples it finds in ``.hypothesis/`` and replays them first next time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock limit for the whole run")
    p.add_argument("--examples", type=int, default=5000, help="examples per target")
    p.add_argument("-k", default=None, help="only the targets whose name matches (pytest -k)")
    a = p.parse_args()
    env = {**os.environ, "STREAMVID_FUZZ_PROFILE": "long", "STREAMVID_FUZZ_EXAMPLES": str(a.examples)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz.py",
           f"--timeout={int(a.minutes * 60)}", "--hypothesis-show-statistics"]
    if a.k:
        cmd += ["-k", a.k]
    try:
        return subprocess.run(cmd, cwd=REPO, env=env, timeout=a.minutes * 60 + 60).returncode
    except subprocess.TimeoutExpired:
        print(f"fuzz: stopped after {a.minutes:g} minutes", file=sys.stderr)
        return 0


if __name__ == "__main__":
    sys.exit(main())
