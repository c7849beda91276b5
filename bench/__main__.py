"""`python -m bench NAME`: run one benchmark; its last line is one JSON object."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import bench


def main(argv: list[str]) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                   if not m.name.startswith("_"))
    if len(argv) < 1 or argv[0] not in names:
        print(f"usage: python -m bench NAME [ARGS]   (NAME: {', '.join(names)})",
              file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
