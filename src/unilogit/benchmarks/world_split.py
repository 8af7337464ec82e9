"""The built-in ``world`` benchmark as a benchmark object (:class:`WorldBenchmark`): one forget
split of a built world (:func:`unilogit.benchmarks.build_world`, which returns the built files
and models, a :class:`~unilogit.benchmarks.world.World`). ``WorldSplit`` is the old name of
:class:`WorldBenchmark`, kept for one release."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .qa import QABenchmark
from .tofu import without_paraphrase
from .world import World, build_world, split_percent
from .world_sanity import ensure_sanity, sanity_line

__all__ = ["WorldBenchmark", "WorldSplit"]


class WorldBenchmark(QABenchmark):
    """The built-in ``world`` benchmark for one forget split (the benchmark contract, like
    :class:`unilogit.benchmarks.tofu.TofuBenchmark`), with its own target and gold models.

    The world is built (or found in the cache) on first use by
    :func:`unilogit.benchmarks.build_world`. Evaluation splits, as in TOFU::

        forget     forgetNN_perturbed      ã = paraphrased answer, 5 perturbed answers
        retain     retain_perturbed        ã = paraphrased answer, 5 perturbed answers
        general    general_perturbed       facts about places, publishers, awards (like
                                           TOFU's world facts): ã = the gold answer
        neighbour  neighbourNN_perturbed   the general facts linked to the forget people
                                           (collateral damage; not part of Model Utility)
        holdout    holdoutNN               never-trained people (membership attacks)

    Model Utility = harmonic mean of {probability, ROUGE-L recall, truth-ratio utility} x
    {retain, general}. To keep an evaluation after every epoch affordable on a CPU, the
    neighbour rows are not scored twice: their numbers are the general split's per-question
    numbers averaged over the neighbour rows, and KL to gold is computed on the forget and
    retain splits only (``kl_splits``).
    """

    name = "world"
    utility_splits = ("retain", "general")
    kl_splits = ("forget", "retain")
    #: World answers are one short sentence: 32 new tokens are plenty.
    default_eval_options: Mapping[str, Any] = {"max_new_tokens": 32, "batch_size": 64}

    def __init__(
        self,
        split: str = "forget10",
        preset: str = "default",
        cache_dir: str | os.PathLike | None = None,
        max_rows: int | None = None,
        *,
        config: Any = None,
        world: Any = None,
        progress: bool = True,
    ) -> None:
        self.percent = split_percent(split)
        self.split = f"forget{self.percent}"
        self.preset = preset
        self.cache_dir = cache_dir
        self.config = config
        if max_rows is not None and (isinstance(max_rows, bool) or int(max_rows) < 1):
            raise ConfigError(f"max_rows must be a positive integer or None, got {max_rows!r}")
        self.max_rows = max_rows
        self.progress = progress
        self._world = world

    @property
    def world(self) -> World:
        """The built :class:`~unilogit.benchmarks.world.World` (built on first access, with its
        sanity figures measured once when its config asks for them)."""
        if self._world is None:
            self._world = build_world(
                self.config if self.config is not None else self.preset,
                self.cache_dir,
                splits=(self.split,),
                progress=self.progress,
            )
            ensure_sanity(self)
        return self._world

    def __repr__(self) -> str:
        return f"WorldBenchmark({self.split!r}, preset={self.preset!r}, max_rows={self.max_rows!r})"

    @property
    def retain_split(self) -> str:
        return f"retain{100 - int(self.percent)}"

    @property
    def configs(self) -> dict[str, str]:
        """Role -> world data file."""
        p = self.percent
        return {
            "train_forget": self.split,
            "train_retain": self.retain_split,
            "forget": f"forget{p}_perturbed",
            "retain": "retain_perturbed",
            "general": "general_perturbed",
            "neighbour": f"neighbour{p}_perturbed",
            "holdout": f"holdout{p}",
        }

    def describe(self) -> dict[str, Any]:
        """Identity of the split and, when the build recorded them, the world's sanity figures
        (``sanity``) with a one-line summary for reports (``notes``)."""
        w = self.world
        out = {
            "name": self.name,
            "split": self.split,
            "preset": getattr(w.config, "name", self.preset),
            "world_hash": Path(w.root).name,
            "max_rows": self.max_rows,
            "configs": self.configs,
        }
        figures = w.sanity(self.split)
        if figures is not None:
            out["sanity"] = figures
            out["notes"] = [sanity_line(figures)]
        return out

    def load(self, name: str) -> list[Any]:
        rows = self.world.load_split(name)
        return rows[: self.max_rows] if self.max_rows is not None else rows

    def forget(self) -> list[Any]:
        return self.load(self.split)

    def retain(self) -> list[Any]:
        return self.load(self.retain_split)

    def eval_splits(self) -> dict[str, list[Any]]:
        """forget, retain, general, neighbour, holdout (see the class docstring)."""
        out = {}
        for role in ("forget", "retain", "general", "neighbour", "holdout"):
            examples = self.load(self.configs[role])
            if role in ("general", "neighbour"):
                examples = [without_paraphrase(e) for e in examples]
            out[role] = examples
        return out

    def holdout(self) -> list[Any]:
        return self.load(self.configs["holdout"])

    def target_model(self) -> tuple[Any, Any]:
        """The world's target model (trained on everything) and its tokenizer."""
        return self.world.load_model("target"), self.world.load_tokenizer()

    def gold_model(self) -> tuple[Any, Any]:
        """The retain model of this split (never saw the forget set) and the tokenizer."""
        return self.world.load_model(self.split), self.world.load_tokenizer()

    def load_tokenizer(self) -> Any:
        """The world's tokenizer (kept for callers of the old interface)."""
        return self.world.load_tokenizer()

    def load_model(self, which: str = "target") -> Any:
        """``"target"``, or ``"retain"`` / the split name for the retain (gold) model (kept for
        callers of the old interface; the contract's are :meth:`target_model` /
        :meth:`gold_model`)."""
        return self.world.load_model(self.split if which in ("retain", "gold") else which)

    def complete(self, result: dict[str, Any], splits: Mapping[str, list[Any]]) -> None:
        """The neighbour split's numbers: the general split's per-question numbers averaged over
        the neighbour rows (they are general facts, scored once)."""
        result["splits"]["neighbour"] = _subset_summary(
            result["splits"]["general"], splits["general"], splits["neighbour"]
        )


def _subset_summary(
    split: Mapping[str, Any], rows: Sequence[Any], subset: Sequence[Any]
) -> dict[str, Any]:
    """Means of ``split``'s per-question numbers over the rows of ``subset`` (matched by
    question and answer): the neighbour facts are general facts, scored once."""
    import numpy as np

    from ..eval import metrics as M

    index = {(e.prompt, e.response): i for i, e in enumerate(rows)}
    picked = [index[(e.prompt, e.response)] for e in subset if (e.prompt, e.response) in index]
    out: dict[str, Any] = {"n": len(picked), "derived_from": "general"}
    if not picked:
        return out
    for key, name in (("probabilities", "probability"), ("rouge_l_recalls", "rouge_l_recall")):
        if key in split:
            out[name] = float(np.mean([split[key][i] for i in picked]))
    if "truth_ratios" in split:
        out["truth_ratio"] = M.truth_ratio_utility([split["truth_ratios"][i] for i in picked])
    return out


#: The old name of :class:`WorldBenchmark` (one release).
WorldSplit = WorldBenchmark
