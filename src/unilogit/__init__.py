"""unilogit: machine unlearning for language models.

from unilogit import unlearn
model, history = unlearn(model, tokenizer, "forget.jsonl", "retain.jsonl", method="unilogit")
"""

from .errors import ConfigError, DataError, TrainingError, UnilogitError
from .methods import METHODS, Method, get_method, register
from .trainer import TrainConfig, finetune, unlearn

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "ConfigError",
    "DataError",
    "Method",
    "TrainConfig",
    "TrainingError",
    "UnilogitError",
    "finetune",
    "get_method",
    "register",
    "unlearn",
]
