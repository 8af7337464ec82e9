"""General utility through EleutherAI's lm-evaluation-harness (``pip install 'unilogit[lm-eval]'``).

:func:`run_lm_eval` runs harness tasks (``mmlu``, ``arc_easy``, ...) on a model already in
memory: the harness's ``HFLM`` wraps our model and tokenizer, nothing is reloaded from disk. The
Unilogit paper reports MMLU accuracy as its utility measure.

The harness's own tasks download their data from the Hugging Face Hub (or read the local
``datasets`` cache with ``HF_DATASETS_OFFLINE=1``). A task can also be defined on local files: a
YAML file in an ``include_path`` folder with ``dataset_path: json`` and
``dataset_kwargs: {data_files: {test: /path/rows.jsonl}}`` (see ``docs/trainer.md`` and
``tests/test_lm_eval.py``, which runs offline that way).

::

    from unilogit.eval.lm_eval import run_lm_eval
    out = run_lm_eval(model, tokenizer, ["mmlu"], limit=100)
    out["tasks"]["mmlu"]["acc"]
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..experiment.hooks import RunHooks

__all__ = ["INSTALL_HINT", "KEY_PREFIX", "LmEvalHooks", "flat_scores", "parse_tasks", "run_lm_eval"]

INSTALL_HINT = "pip install 'unilogit[lm-eval]' (or: pip install lm-eval)"
#: Record fields of harness scores: ``lm_eval/<task>/<metric>`` (:func:`flat_scores`).
KEY_PREFIX = "lm_eval/"


def _harness() -> Any:
    """The ``lm_eval`` package, or a ConfigError saying how to install it."""
    try:
        return importlib.import_module("lm_eval")
    except ImportError:
        raise ConfigError(f"lm-evaluation-harness is not installed: {INSTALL_HINT}") from None


def parse_tasks(tasks: str | Sequence[str]) -> list[str]:
    """``"mmlu, arc_easy"`` or a list -> ``["mmlu", "arc_easy"]`` (order kept, no duplicates)."""
    items = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    names = list(dict.fromkeys(t.strip() for t in items if t and t.strip()))
    if not names:
        raise ConfigError("no lm-eval task given (e.g. --lm-eval-tasks mmlu,arc_easy)")
    return names


def run_lm_eval(
    model: Any,
    tokenizer: Any,
    tasks: str | Sequence[str],
    *,
    include_path: str | Path | None = None,
    num_fewshot: int | None = None,
    limit: int | float | None = None,
    batch_size: int = 8,
    apply_chat_template: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Run lm-evaluation-harness ``tasks`` on ``model`` (a causal LM in memory) and return
    ``{"tasks": {task: {metric: value}}, "n_samples": {...}, "n_shot": {...}, "versions":
    {...}, "lm_eval_version": str, "limit": limit}``.

    Metric names drop the harness's ``,none`` filter suffix (``"acc,none"`` -> ``"acc"``;
    another filter stays: ``"exact_match/strict-match"``); non-numeric values (``"N/A"``) are
    left out. Group tasks (``mmlu``) report the group and each subtask. ``include_path``: a
    folder of extra task YAML files (local tasks). ``limit``: at most this many documents per
    task (a fraction < 1 = that share). The model is left in eval mode, as evaluation found it
    otherwise (its training flag is restored). Unknown tasks raise :class:`ConfigError`; data
    that cannot be loaded :class:`DataError`.
    """
    harness = _harness()
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    names = parse_tasks(tasks)
    if include_path is not None and not Path(include_path).is_dir():
        raise ConfigError(f"lm-eval include path is not a folder: {include_path}")
    manager = TaskManager(include_path=str(include_path) if include_path else None)
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        raise ConfigError(
            f"unknown lm-eval task(s) {unknown}; list them with `lm-eval ls tasks`"
            + ("" if include_path else " (local tasks: pass an include path of task YAML files)")
        )
    was_training = model.training
    model.eval()
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        results = harness.simple_evaluate(
            model=lm,
            tasks=names,
            task_manager=manager,
            num_fewshot=num_fewshot,
            limit=limit,
            apply_chat_template=apply_chat_template,
            log_samples=False,
            bootstrap_iters=0,  # no bootstrap standard errors: deterministic and fast
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    except (ConfigError, DataError):
        raise
    except (FileNotFoundError, ConnectionError, OSError) as e:
        raise DataError(
            f"lm-eval could not load the data of {names}: {e}; the harness's tasks download "
            "from the Hugging Face Hub (offline: only what the datasets cache holds)"
        ) from e
    finally:
        model.train(was_training)
    return _summarise(results, limit)


def _summarise(results: dict[str, Any], limit: int | float | None) -> dict[str, Any]:
    tasks: dict[str, dict[str, float]] = {}
    for task, metrics in results["results"].items():
        out: dict[str, float] = {}
        for key, value in metrics.items():
            if "," not in key or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            out[metric if filt == "none" else f"{metric}/{filt}"] = float(value)
        tasks[task] = out
    try:
        version = importlib.metadata.version("lm_eval")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        version = None
    return {
        "tasks": tasks,
        "n_samples": results.get("n-samples", {}),
        "n_shot": results.get("n-shot", {}),
        "versions": results.get("versions", {}),
        "lm_eval_version": version,
        "limit": limit,
    }


def flat_scores(result: dict[str, Any]) -> dict[str, float]:
    """:func:`run_lm_eval`'s scores as flat record fields: ``{"lm_eval/<task>/<metric>": v}``."""
    return {
        f"{KEY_PREFIX}{task}/{metric}": value
        for task, metrics in result["tasks"].items()
        for metric, value in metrics.items()
    }


class LmEvalHooks(RunHooks):
    """Harness tasks in an experiment (``unilogit bench --lm-eval-tasks``): the target model is
    scored once (its baseline record) and every run at its final evaluation and, with
    ``at_kept``, at the step its auto-stop rule keeps; scores are record fields
    ``lm_eval/<task>/<metric>`` (:func:`flat_scores`). ``options``: :func:`run_lm_eval`'s
    keyword arguments (``include_path``, ``num_fewshot``, ``limit``, ``batch_size``,
    ``apply_chat_template``, ``seed``); with the tasks and the harness version they are the
    results folder's fingerprint, so scores of other settings are never mixed."""

    def __init__(self, tasks: str | Sequence[str], *, at_kept: bool = True, **options: Any):
        _harness()  # not installed: a ConfigError now, before any model loads
        self.tasks = parse_tasks(tasks)
        self.options = options
        self.at_kept = at_kept
        include = options.get("include_path")
        if include is not None and not Path(include).is_dir():
            raise ConfigError(f"lm-eval include path is not a folder: {include}")

    def fingerprint(self) -> dict[str, Any]:
        options = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.options.items()}
        try:
            version = importlib.metadata.version("lm_eval")
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover
            version = None
        return {"lm_eval": {"tasks": self.tasks, **options, "version": version}}

    def score(self, model: Any, tokenizer: Any) -> dict[str, float]:
        return flat_scores(run_lm_eval(model, tokenizer, self.tasks, **self.options))

    def baseline(self, model: Any, tokenizer: Any) -> dict[str, float]:
        return self.score(model, tokenizer)

    def evaluation(
        self, run: Any, model: Any, tokenizer: Any, step: int, final: bool, kept: bool
    ) -> dict[str, float] | None:
        if final or (kept and self.at_kept):
            return self.score(model, tokenizer)
        return None
