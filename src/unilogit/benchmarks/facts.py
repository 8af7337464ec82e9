"""``facts``: forget what a real model knows, RWKU-style (Jin et al., NeurIPS 2024 D&B).

Real entities a pretrained instruct model demonstrably knows (default model: SmolLM2-135M-
Instruct, :mod:`unilogit.pretrained`) are unlearned from a forget corpus the model wrote itself
(:mod:`.facts_corpus`), then measured with knowledge probes (:mod:`unilogit.eval.probes`) at three
levels (fill-in-the-blank ``fb``, question answering ``qa``, adversarial ``adv``), neighbour probes
(related facts that must survive), utility probes (general knowledge), fluency (entropy and
repetition of answers to open instructions) and membership inference (forget corpus against
texts of the same kind about held-out entities)::

    from unilogit.benchmarks.facts import FactsBenchmark
    bench = FactsBenchmark("batch")              # or "batch:4", "target:einstein"
    model, tokenizer = bench.target_model()      # the original model
    bench.prepare(model, tokenizer)              # filter probes + write the corpus (cached)
    forget = bench.forget()                      # Examples (raw text) for unilogit.unlearn
    ... unlearn(model, tokenizer, forget, method="unilogit", ...)
    result = bench.evaluate(model, tokenizer)    # per-probe details, generations
    bench.summarize(result)                      # {"forget/score": ..., "neighbour/score": ...}

Probes are kept only if the ORIGINAL model answers them correctly (:mod:`.facts_filter`), so it
scores 1.0 on all of them; a target counts as known (and is used) when at least ``min_known`` of
its forget probes survive. Everything per model is cached under
``<cache>/facts/<weights hash>/``. Settings: ``batch`` (every known target at once),
``batch:N`` (the first N known targets), ``target:<id>`` (one target), ``single`` /
``single:N`` (RWKU's single-target setting: every known target, or the first N, unlearned
alone from the original model; :meth:`FactsBenchmark.parts` gives one ``target:<id>``
benchmark each, and ``bench`` averages their results over targets).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from unilogit.errors import ConfigError
from unilogit.eval.probes import Probe

from .base import Benchmark, Column, Curve
from .facts_corpus import CorpusConfig, corpus_texts
from .facts_files import FactsData, Target, load_data
from .facts_filter import filter_key, verdicts

__all__ = ["FactsBenchmark"]

KINDS = ("forget", "neighbour", "utility")
LEVELS = ("fb", "qa", "adv")


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[unilogit facts] {msg}", file=sys.stderr, flush=True)


def parse_split(split: str) -> tuple[str, int | str | None]:
    """``"batch"`` -> ("batch", None); ``"batch:4"`` -> ("batch", 4);
    ``"target:x"`` -> ("target", "x"); ``"single:4"`` -> ("single", 4)."""
    mode, _, arg = (split or "batch").partition(":")
    if mode in ("batch", "single"):
        if not arg:
            return mode, None
        if arg.isdigit() and int(arg) > 0:
            return mode, int(arg)
    elif mode == "target" and arg:
        return "target", arg
    raise ConfigError(
        "facts split must be 'batch', 'batch:N' (N >= 1), 'target:<id>', 'single' or "
        f"'single:N', got {split!r}"
    )


class FactsBenchmark(Benchmark):
    """RWKU-style unlearning of real knowledge (module docstring).

    Args:
        split: ``batch``, ``batch:N``, ``target:<id>``, ``single`` or ``single:N`` (the
            last two only through :meth:`parts`).
        model: the original model (path, Hub id, ``.gguf``); ``None`` = SmolLM2-135M-Instruct.
        data_dir: a folder of probe files replacing the shipped ones.
        cache_dir: cache base (default ``$UNILOGIT_CACHE`` or ``~/.cache/unilogit``).
        min_known: forget probes a target needs after filtering to be used.
        max_utility: use at most this many utility probe CANDIDATES (spread over the file) —
            cheaper filtering and evaluation; ``None`` = all.
        max_probes: at most this many forget / neighbour candidates per target (tests).
        with_retain: add a retain corpus (texts about the targets' neighbours).
        holdout_entities: entities whose texts are MIA non-members (default: as many as
            targets, at least 4).
        corpus: how the model writes its texts.
    """

    name = "facts"
    has_gold = False
    default_eval_options: Mapping[str, Any] = {
        "batch_size": 16,  # probe rows per forward pass
        "fluency_prompts": 6,  # open instructions answered (0 = skip fluency)
        "fluency_tokens": 48,  # new tokens per fluency answer
        "examples": 2,  # probes per kind generated for before/after examples (0 = none)
        "example_tokens": 16,
        "mia": True,  # membership inference on the forget corpus vs holdout texts
    }
    columns = (
        Column("forget/score", "forget", higher_is_better=False),
        Column("forget/fb", "forget FB", higher_is_better=False),
        Column("forget/qa", "forget QA", higher_is_better=False),
        Column("forget/adv", "forget AA", higher_is_better=False),
        Column("neighbour/score", "neighbour", higher_is_better=True),
        Column("utility/score", "utility", higher_is_better=True),
        Column("fluency/entropy", "fluency", higher_is_better=True),
        Column("mia/loss_auc", "MIA AUC", higher_is_better=None),
    )
    curves = (
        Curve(
            "forget/score",
            "neighbour/score",
            "forgetting vs neighbour knowledge",
            x_label="forget score (greedy-correct, lower = more forgotten)",
            y_label="neighbour score",
            x_higher_is_better=False,
        ),
        Curve(
            "forget/score",
            "utility/score",
            "forgetting vs general knowledge",
            x_label="forget score (greedy-correct, lower = more forgotten)",
            y_label="utility score",
            x_higher_is_better=False,
        ),
    )

    def __init__(
        self,
        split: str = "batch",
        *,
        model: str | None = None,
        data_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        min_known: int = 4,
        max_utility: int | None = None,
        max_probes: int | None = None,
        with_retain: bool = False,
        holdout_entities: int | None = None,
        corpus: CorpusConfig | None = None,
        progress: bool = True,
    ) -> None:
        from unilogit.pretrained import cache_root

        self.split = split or "batch"
        self.mode, self.arg = parse_split(self.split)
        self._options = {
            "model": model, "data_dir": data_dir, "cache_dir": cache_dir,
            "min_known": min_known, "max_utility": max_utility, "max_probes": max_probes,
            "with_retain": with_retain, "holdout_entities": holdout_entities,
            "corpus": corpus, "progress": progress,
        }  # fmt: skip
        self.model_spec = str(model) if model is not None else None
        self.data: FactsData = load_data(data_dir)
        self.cache_base = Path(cache_dir).expanduser() if cache_dir else cache_root()
        for what, value in (
            ("min_known", min_known),
            ("max_utility", max_utility),
            ("max_probes", max_probes),
            ("holdout_entities", holdout_entities),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{what} must be a positive integer, got {value!r}")
        if holdout_entities is not None and holdout_entities > len(self.data.holdout):
            raise ConfigError(
                f"holdout_entities: the facts data has {len(self.data.holdout)} holdout "
                f"entities, got {holdout_entities}"
            )
        self.min_known, self.max_utility, self.max_probes = min_known, max_utility, max_probes
        self.with_retain = bool(with_retain)
        self.holdout_entities = holdout_entities
        self.corpus_config = corpus or CorpusConfig()
        self.progress = progress
        if self.mode == "target" and self.arg not in {t.id for t in self.data.targets}:
            raise ConfigError(
                f"unknown facts target {self.arg!r}; targets: "
                + ", ".join(t.id for t in self.data.targets)
            )
        self._state: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"FactsBenchmark({self.split!r}, model={self.model_spec or 'SmolLM2-135M-Instruct'})"

    # ------------------------------------------------------------------------------ identity

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "split": self.split,
            "model": self.model_spec or "SmolLM2-135M-Instruct",
            "data_sha256": self.data.sha256,
            "min_known": self.min_known,
            "max_utility": self.max_utility,
            "max_probes": self.max_probes,
            "with_retain": self.with_retain,
            "holdout_entities": self.holdout_entities,
            "corpus": json.loads(json.dumps(asdict(self.corpus_config))),  # tuples as lists
            "source": self.data.source,
        }
        return out

    # ------------------------------------------------------------------------------ models

    def target_model(self) -> tuple[Any, Any]:
        """The original model and tokenizer (SmolLM2 unless ``model`` was given)."""
        from unilogit.models import load_model
        from unilogit.pretrained import load_smollm2

        if self.model_spec is None:
            return load_smollm2(progress=self.progress)
        return load_model(self.model_spec, device="cpu")

    def parts(self) -> list[FactsBenchmark] | None:
        """``single[:N]``: one ``target:<id>`` benchmark per known target (the first N), each
        unlearned alone from the original model (RWKU's single-target setting); otherwise
        ``None``. Which targets are known is decided as for ``batch[:N]`` (cached)."""
        if self.mode != "single":
            return None
        batch = "batch" if self.arg is None else f"batch:{self.arg}"
        ids = FactsBenchmark(batch, **self._options).filter_report()["targets"]
        return [FactsBenchmark(f"target:{t}", **self._options) for t in ids]

    # ------------------------------------------------------------------------------ preparation

    def _candidates(self, kind: str, target_ids: Sequence[str]) -> list[Probe]:
        if kind == "utility":
            probes = list(self.data.utility)
            if self.max_utility is not None and len(probes) > self.max_utility:
                step = len(probes) / self.max_utility  # spread over the file's groups
                probes = [probes[int(i * step)] for i in range(self.max_utility)]
            return probes
        out: list[Probe] = []
        for tid in target_ids:
            own = [p for p in getattr(self.data, kind) if p.target == tid]
            out += own[: self.max_probes] if self.max_probes else own
        return out

    def prepare(self, model: Any = None, tokenizer: Any = None) -> dict[str, Any]:
        """Filter the probes and write the corpus with the ORIGINAL model (cached per weights).

        ``model``/``tokenizer``: the original model, untouched (default: :meth:`target_model`).
        Call it before training when you already hold the original model; otherwise the first
        :meth:`forget` / :meth:`evaluate` call loads it. Returns the filtering report.
        """
        if self._state is not None:
            return self._state["report"]
        if self.mode == "single":
            raise ConfigError(
                f"facts split {self.split!r} is one unlearning problem per target: "
                "`unilogit bench` runs each and averages them; elsewhere use target:<id> or "
                "batch[:N]"
            )
        from unilogit.models import weights_sha256

        t0 = time.perf_counter()
        if model is None:
            model, tokenizer = self.target_model()
        sha = weights_sha256(model)
        cache = self.cache_base / "facts" / sha[:16]
        key = filter_key(sha, self.data.sha256)

        def judge(probes: list[Probe]) -> dict[str, dict[str, Any]]:
            return verdicts(
                model, tokenizer, probes, key=key, cache_dir=cache, progress=self.progress
            )

        targets, excluded = self._known_targets(judge)
        ids = [t.id for t in targets]
        kept: dict[str, list[Probe]] = {}
        details: dict[str, dict[str, Any]] = {}
        for kind in KINDS:
            cands = self._candidates(kind, ids)
            v = judge(cands)
            details.update(v)
            kept[kind] = [p for p in cands if v[p.id]["kept"]]
        kept["neighbour"] = _without_duplicates(kept["neighbour"], kept["forget"])
        texts = self._write_corpus(model, tokenizer, targets, sha, cache)
        report = {
            "model_sha256": sha,
            "targets": ids,
            "excluded_targets": excluded,
            "candidates": {k: len(self._candidates(k, ids)) for k in KINDS},
            "kept": {k: len(v) for k, v in kept.items()},
            "probes": details,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        self._state = {
            "model_sha": sha,
            "targets": targets,
            "kept": kept,
            "texts": texts,
            "report": report,
        }
        _log(self.progress, f"{len(ids)} targets; kept probes: {report['kept']}")
        return report

    def _known_targets(self, judge) -> tuple[list[Target], dict[str, str]]:
        """The setting's targets that the original model knows, and why others are excluded."""
        pool = list(self.data.targets)
        if self.mode == "target":
            pool = [t for t in pool if t.id == self.arg]
        need = self.arg if self.mode == "batch" and self.arg else 1  # plain batch: all known
        want = self.arg if self.mode == "batch" and self.arg else len(pool)
        chosen: list[Target] = []
        excluded: dict[str, str] = {}
        for target in pool:
            if len(chosen) >= want:
                break
            v = judge(self._candidates("forget", [target.id]))
            n = sum(x["kept"] for x in v.values())
            if n >= min(self.min_known, len(v)):
                chosen.append(target)
            else:
                excluded[target.id] = f"only {n} of {len(v)} forget probes answered correctly"
        if len(chosen) < need:
            raise ConfigError(
                f"facts {self.split}: the original model knows only {len(chosen)} target(s) "
                f"(needed {need}); excluded: {excluded}"
            )
        return chosen, excluded

    def _write_corpus(self, model, tokenizer, targets, sha, cache) -> dict[str, list[str]]:
        names = {"forget": [t.name for t in targets]}
        n_hold = self.holdout_entities or max(4, len(targets))
        names["holdout"] = [t.name for t in self.data.holdout[:n_hold]]
        if self.with_retain:
            chosen = {t.name for t in targets}
            nb = [n for t in targets for n in t.neighbours if n not in chosen]
            names["retain"] = list(dict.fromkeys(nb))
        everything = [n for group in names.values() for n in group]
        _log(self.progress, f"corpus: texts about {len(everything)} entities (cached per model)")
        texts = corpus_texts(
            model,
            tokenizer,
            everything,
            self.corpus_config,
            model_sha=sha,
            cache_dir=cache,
            progress=(lambda m: None) if self.progress else None,
        )
        return {group: [t for n in ns for t in texts[n]] for group, ns in names.items()}

    def _prepared(self) -> dict[str, Any]:
        if self._state is None:
            self.prepare()
        assert self._state is not None
        return self._state

    # ------------------------------------------------------------------------------ data

    def probes(self, kind: str) -> list[Probe]:
        """The kept probes of ``kind`` (``forget``, ``neighbour``, ``utility``)."""
        if kind not in KINDS:
            raise ConfigError(f"probe kind must be one of {', '.join(KINDS)}, got {kind!r}")
        return list(self._prepared()["kept"][kind])

    def forget(self) -> list[Any]:
        """The forget corpus: the original model's texts about the targets (raw-text rows)."""
        return _text_examples(self._prepared()["texts"]["forget"], "facts-forget")

    def retain(self) -> list[Any] | None:
        """Texts about the targets' neighbours when ``with_retain``; else ``None``."""
        texts = self._prepared()["texts"].get("retain")
        return _text_examples(texts, "facts-retain") if texts else None

    def holdout(self) -> list[Any] | None:
        """Texts of the same kind about entities never trained on (MIA non-members)."""
        return _text_examples(self._prepared()["texts"]["holdout"], "facts-holdout")

    def filter_report(self) -> dict[str, Any]:
        """Which probes were kept and why, counts, excluded targets."""
        return self._prepared()["report"]

    # ------------------------------------------------------------------------------ evaluation

    def evaluate(
        self,
        model: Any,
        tokenizer: Any,
        *,
        reference: Any = None,
        gold_model: Any = None,
        progress: bool = True,
        **options: Any,
    ) -> dict[str, Any]:
        """Probe scores (overall, per level, per target, per probe), fluency, MIA, examples.

        ``reference`` is accepted for the contract (a saved facts evaluation; its origin is
        recorded) but no metric needs one; ``gold_model`` must be ``None`` (no gold model).
        """
        from .facts_eval import run_evaluation

        self.check_options(options, list(self.default_eval_options))
        if gold_model is not None:
            raise ConfigError("the facts benchmark has no gold model (has_gold is False)")
        opts = {**self.default_eval_options, **options}
        state = self._prepared()
        ref = self.resolve_reference(reference) if reference is not None else None
        result = run_evaluation(model, tokenizer, state, self.data.fluency, opts, progress)
        result["benchmark"] = self.describe()
        result["setting"] = {
            "original_model_sha256": state["model_sha"],
            "targets": [t.id for t in state["targets"]],
            "kept": {k: len(v) for k, v in state["kept"].items()},
        }
        result["reference"] = ref.info if ref is not None else None
        return result

    def summarize(self, result: Mapping[str, Any]) -> dict[str, float]:
        from .facts_eval import summarize_result

        return summarize_result(result)


def _without_duplicates(neighbour: list[Probe], forget: list[Probe]) -> list[Probe]:
    """Neighbour probes minus those asking a forget probe's question, each question once."""
    seen = {(p.prompt, p.lead) for p in forget}
    out = []
    for p in neighbour:
        if (p.prompt, p.lead) not in seen:
            seen.add((p.prompt, p.lead))
            out.append(p)
    return out


def _text_examples(texts: Sequence[str], name: str) -> list[Any]:
    from unilogit.data import Example

    return [
        Example(prompt="", response=t, kind="text", row_id=f"{name}[{i}]")
        for i, t in enumerate(texts)
        if t.strip()
    ]
