"""Rebuild the shipped demo dataset (src/moslim/assets/demo/) from the public data folder.

    .venv/bin/python scripts/build_demo_data.py --source /work/shared/data

Same as `moslim data build-demo --source DIR`; the build is seeded and byte-stable, so a rebuild
leaves `git status` clean.
"""

import sys

from moslim.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", "build-demo", *sys.argv[1:]]))
