"""The ``unilogit`` command line: a thin layer of argument parsing over the public API.

One module per subcommand (``unlearn``, ``finetune``, ``evaluate`` = ``eval``, ``bench``,
``demo``, ``methods``, ``verify``), the shared option groups and the one ``KEY=VALUE`` parser in
:mod:`.options`, the parser and dispatch in :mod:`.main`. Examples::

    unilogit unlearn --model ../shared/models/stories260K.gguf --forget forget.jsonl \\
        --method unilogit --output runs/forgot --epochs 5 --lr 1e-4
    unilogit methods
    unilogit verify runs/forgot
    unilogit --version
"""

from __future__ import annotations

from .main import main, make_parser, silence_library_progress

__all__ = ["main", "make_parser", "silence_library_progress"]
