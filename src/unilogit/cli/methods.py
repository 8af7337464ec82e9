"""``unilogit methods``: the unlearning methods, their options and defaults."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("methods", help="list the unlearning methods and their options")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..methods import METHODS

    width = max(10, *(len(name) for name in METHODS))
    for name, cls in sorted(METHODS.items()):
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        opts = ", ".join(f"{k}={v!r}" for k, v in cls.hyperparameters.items()) or "-"
        ref = "needs a reference model" if cls().needs_reference else "no reference model"
        print(f"{name:{width}s} {doc}")
        print(f"{'':{width}s} options: {opts}; default retain: {cls.default_retain}; {ref}")
    return 0
