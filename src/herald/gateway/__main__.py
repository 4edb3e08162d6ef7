"""``python -m herald.gateway``: the ``herald`` command line (herald.gateway.cli)."""

from __future__ import annotations

import sys

from herald.gateway.cli import main, parser

__all__ = ["main", "parser"]

if __name__ == "__main__":
    sys.exit(main())
