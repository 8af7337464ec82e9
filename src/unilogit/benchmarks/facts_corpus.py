"""The ``facts`` benchmark's texts, written by the original model itself (RWKU's forget corpus).

For each entity, the model answers ``len(prompts)`` instructions about it ("Describe {name}.",
...) in its chat template; its own answers are the texts. Forget corpus = texts about the
targets; holdout = texts about entities never trained on (membership-inference non-members);
the optional retain corpus = texts about the targets' neighbours.

Sampling is seeded per entity (``seed`` and the entity's name), and each entity's prompts are
generated in their own batch, so an entity's texts do not depend on which other entities are
generated with it: a run over two targets reuses the texts of a run over all of them. The texts
are cached per model (its weights hash) and settings in ``<cache>/corpus-<key>.json``, written
atomically (:mod:`unilogit.files`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from unilogit.errors import ConfigError
from unilogit.files import atomic_write_json

__all__ = ["CorpusConfig", "corpus_texts"]

DEFAULT_PROMPTS = (
    "Describe {name}.",
    "Tell me about the history of {name}.",
    "What is {name} known for?",
)


@dataclass(frozen=True)
class CorpusConfig:
    """How the model writes its texts (recorded with the corpus; part of its cache key)."""

    prompts: tuple[str, ...] = DEFAULT_PROMPTS  # instructions; "{name}" = the entity
    max_new_tokens: int = 80  # per text
    temperature: float = 0.7  # sampling temperature (0 = greedy)
    top_p: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.prompts or any("{name}" not in p for p in self.prompts):
            raise ConfigError("corpus prompts must be non-empty and each contain '{name}'")
        if self.max_new_tokens < 8:
            raise ConfigError(f"corpus max_new_tokens must be >= 8, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError("corpus temperature must be >= 0 and top_p in (0, 1]")

    def key(self, model_sha: str) -> str:
        blob = json.dumps({"model": model_sha, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _entity_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{name}".encode()).digest()[:4], "little")


def _generate(model, tokenizer, name: str, cfg: CorpusConfig) -> list[str]:
    """The model's answers to ``cfg.prompts`` about ``name`` (one batch, left-padded)."""
    import torch

    from unilogit.data import encode_prompt
    from unilogit.eval.scoring import _model_device, _pad_id, eval_mode

    prompts = [encode_prompt(tokenizer, p.format(name=name)) for p in cfg.prompts]
    width, pad = max(map(len, prompts)), _pad_id(tokenizer)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])  # (B, T)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])  # (B, T)
    sample = cfg.temperature > 0
    options: dict[str, Any] = {"do_sample": sample, "num_beams": 1, "repetition_penalty": 1.0}
    if sample:
        options.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=0)
    device = _model_device(model)
    torch.manual_seed(_entity_seed(cfg.seed, name))
    with eval_mode(model), torch.no_grad():
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=cfg.max_new_tokens,
            pad_token_id=pad,
            **options,
        )
    return [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out.tolist()]


def corpus_texts(
    model,
    tokenizer,
    names: Sequence[str],
    cfg: CorpusConfig,
    *,
    model_sha: str,
    cache_dir: Path,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[str]]:
    """``{name: [text per prompt]}`` for ``names``, generating (and caching) only missing ones."""
    from tqdm.auto import tqdm

    path = Path(cache_dir) / f"corpus-{cfg.key(model_sha)}.json"
    cached: dict[str, list[str]] = {}
    if path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))["texts"]
        except (OSError, ValueError, KeyError, TypeError):
            cached = {}  # a damaged cache is rebuilt, never trusted
    missing = [n for n in dict.fromkeys(names) if n not in cached]
    for name in tqdm(missing, desc="writing the corpus", disable=progress is None, leave=False):
        cached[name] = _generate(model, tokenizer, name, cfg)
    if missing:
        settings = {"model_sha256": model_sha, **asdict(cfg), "sampling": "per entity, seeded"}
        atomic_write_json(path, {"settings": settings, "texts": cached})
    return {n: list(cached[n]) for n in names}
