"""Optional dependencies: imported when first used, with an error naming the extra to install.

The core (losses, methods, the training loop, the CLI's ``unlearn``/``finetune``) needs only
torch, transformers, accelerate, peft, safetensors, numpy, tqdm, huggingface_hub and PyYAML.
Everything else is an extra of ``pyproject.toml``; :data:`EXTRAS` says which.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ConfigError

#: import name -> (distribution on PyPI, the unilogit extra that installs it).
EXTRAS = {
    "scipy": ("scipy", "eval"),
    "rouge_score": ("rouge-score", "eval"),
    "nltk": ("nltk", "eval"),
    "matplotlib": ("matplotlib", "report"),
    "gguf": ("gguf", "gguf"),
    "tensorboard": ("tensorboard", "track"),
    "datasets": ("datasets", "data"),
    "pyarrow": ("pyarrow", "data"),
}


class MissingExtra(ConfigError):
    """An optional dependency is not installed (the message says which extra installs it)."""


def install_hint(module: str) -> str:
    """``pip install 'unilogit[EXTRA]'`` for a top-level import name of :data:`EXTRAS`."""
    dist, extra = EXTRAS[module.split(".")[0]]
    return f"pip install 'unilogit[{extra}]' (or pip install {dist})"


def require(module: str, purpose: str) -> ModuleType:
    """``import module``, or :class:`MissingExtra` naming ``purpose`` and the extra to install.

    ``module`` may be dotted (``matplotlib.figure``); its top-level name must be in
    :data:`EXTRAS`.
    """
    top = module.split(".")[0]
    if top not in EXTRAS:
        raise KeyError(f"{top!r} is not an optional dependency (see unilogit.extras.EXTRAS)")
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name is not None and e.name.split(".")[0] != top:
            raise  # the package is there but one of its own imports failed: show that
        raise MissingExtra(
            f"{purpose} needs {EXTRAS[top][0]}, which is not installed: {install_hint(top)}"
        ) from None


def available(module: str) -> bool:
    """True when ``module`` can be imported (without importing it)."""
    import importlib.util
    import sys

    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None
