"""``unilogit verify DIR``: check a saved model against its ``unlearn_record.json``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("verify", help="check that a saved model matches its unlearn_record.json")
    p.add_argument("directory")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Exit 0 when every check passes, 1 when one fails (the checks are printed as JSON)."""
    from ..record import verify

    result = verify(args.directory)
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1
