"""The ``unilogit`` parser and dispatch: one subcommand per module, errors as one line.

Every subcommand module has ``add_parser(subparsers)``, which sets ``handler(args) -> exit
code`` (and optionally ``on_interrupt(args, argv) -> message``) as parser defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from .. import config_file
from ..errors import Interrupted, UnilogitError
from . import bench, demo, evaluate, finetune, methods, unlearn, verify
from .options import add_aliases

#: The subcommands, in the order ``unilogit --help`` lists them.
COMMANDS = (unlearn, finetune, evaluate, bench, demo, methods, verify)

#: Exit codes: 2 = an error the user can fix (bad option, data, path), 130 = Ctrl-C / SIGTERM.
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def make_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="unilogit",
        description="Machine unlearning for language models: Unilogit and strong baselines.",
    )
    parser.add_argument("--version", action="version", version=f"unilogit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    for name, p in sub.choices.items():
        if name in config_file.CONFIG_COMMANDS:
            config_file.add_config_option(p)
        add_aliases(p)
    return parser


def silence_library_progress(args: argparse.Namespace) -> None:
    """With ``--no-progress``, also hide the Hugging Face libraries' own bars."""
    if getattr(args, "progress", True) is False:
        import transformers

        from ..extras import available

        transformers.utils.logging.disable_progress_bar()
        if available("datasets"):  # an optional dependency (the data extra)
            import datasets

            datasets.disable_progress_bars()


def os_error_text(error: OSError) -> str:
    """``PATH: reason`` of an OSError (disk full, read-only folder, permission ...)."""
    reason = error.strerror or str(error)
    if error.filename is None:
        return reason
    where = str(error.filename)
    if error.filename2 is not None:
        where += f" -> {error.filename2}"
    return f"{where}: {reason}"


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"terminated by signal {signum}")


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (a scheduler's or ``kill``'s stop) is handled like Ctrl-C: the recipes save what
    can be resumed and say how. Main thread only (signals cannot be set elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``unilogit ARGV``; returns the exit code (0 ok, 1 verify failed, 2 error, 130 Ctrl-C
    or SIGTERM)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = config_file.parse_args(make_parser(), argv)
    except UnilogitError as e:  # a bad --config file
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    try:
        silence_library_progress(args)
        with _sigterm_as_ctrl_c():
            return args.handler(args)
    except (KeyboardInterrupt, Interrupted) as e:  # the recipes turn Ctrl-C into Interrupted
        hint = getattr(args, "on_interrupt", None)
        text = hint(args, argv) if hint is not None else str(e) or "interrupted"
        print(text, file=sys.stderr)
        return EXIT_INTERRUPTED
    except UnilogitError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:
        print(f"error: {os_error_text(e)}", file=sys.stderr)
        return EXIT_ERROR
