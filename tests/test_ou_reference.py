"""open-unlearning as the reference: its numbers (tests/fixtures/ou_reference.json, produced by
its own metric code on stories260K; see docs/metrics.md) reproduced by ours, its logs read as
--reference, its prompt formats as defaults."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from tiny import tiny_llama
from unilogit.benchmarks.tofu import TofuBenchmark
from unilogit.errors import ConfigError, DataError
from unilogit.eval.ou_names import from_ou_log, is_ou_log
from unilogit.eval.prompt_defaults import resolve_prompt_format
from unilogit.prompts import PromptFormat

SYS = "You are a helpful assistant."
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "ou_reference.json").read_text())
#: Metrics that need no generation / gradients (the rest are checked by the scratch script).
FAST = (
    "forget_Q_A_Prob", "forget_truth_ratio", "retain_Q_A_Prob", "retain_Truth_Ratio",
    "ra_Q_A_Prob_normalised", "ra_Truth_Ratio", "wf_Q_A_Prob_normalised", "wf_Truth_Ratio",
    "extraction_strength", "exact_memorization", "mia_loss", "mia_zlib", "mia_min_k",
    "mia_min_k_plus_plus", "mia_reference", "forget_quality", "privleak",
)  # fmt: skip


@pytest.fixture(scope="module")
def stories(shared_dir):
    from unilogit.models import load_model

    path = shared_dir / "models" / "stories260K.gguf"
    if not path.is_file() or not (shared_dir / "data" / "tofu").is_dir():
        pytest.skip("stories260K.gguf or the TOFU files are missing")
    retain, tok = load_model(str(path))
    collapsed = copy.deepcopy(retain)
    with torch.no_grad():
        collapsed.lm_head.weight.mul_(FIXTURE["collapse_factor"])
    bench = TofuBenchmark(
        "forget10", data_dir=shared_dir / "data" / "tofu", max_rows=FIXTURE["rows_per_split"]
    )
    return bench, retain, collapsed, tok


def test_open_unlearning_numbers_reproduced(stories):
    bench, retain, collapsed, tok = stories
    kw = dict(metrics_convention="open-unlearning", generate=False, progress=False, batch_size=64)
    ref = bench.evaluate(retain, tok, gold_model=retain, **kw)
    got = {
        "retain": ref,  # its FQ (1) and PrivLeak (0) against itself are checked by the script
        "collapsed": bench.evaluate(collapsed, tok, reference=ref, gold_model=retain, **kw),
    }
    for model, result in got.items():
        theirs = FIXTURE["open_unlearning"][model]
        for name in FAST:
            if name not in result["ou_names"] and model == "retain":
                assert name in ("forget_quality", "privleak")
                continue
            assert result["ou_names"][name] == pytest.approx(theirs[name], rel=1e-6, abs=1e-6), (
                model,
                name,
            )
    # the collapsed model's Forget Quality: OU's tiny value, far from the exact one
    fq = got["collapsed"]["forget_quality"]
    assert fq == pytest.approx(FIXTURE["open_unlearning"]["collapsed"]["forget_quality"], rel=1e-6)
    exact_ref = bench.evaluate(
        retain, tok, metrics_convention="exact", generate=False, progress=False
    )
    exact = bench.evaluate(
        collapsed, tok, reference=exact_ref, metrics_convention="exact", generate=False,
        progress=False,
    )  # fmt: skip
    assert exact["forget_quality"] > 1e6 * fq


def test_ou_log_as_reference(stories, tmp_path):
    bench, retain, collapsed, tok = stories
    path = tmp_path / "TOFU_EVAL.json"
    path.write_text(json.dumps(FIXTURE["ou_retain_log"]))
    kw = dict(generate=False, progress=False, batch_size=64)
    out = bench.evaluate(collapsed, tok, reference=str(path), **kw)
    want = FIXTURE["open_unlearning"]["collapsed"]
    assert out["reference"]["kind"] == "open-unlearning log"
    assert out["forget_quality"] == pytest.approx(want["forget_quality"], rel=1e-6)
    assert out["privleak"] == pytest.approx(want["privleak"], rel=1e-6)
    # an OU log is computed under OU's convention: refused for an exact evaluation
    with pytest.raises(ConfigError, match="another convention"):
        bench.evaluate(collapsed, tok, reference=str(path), metrics_convention="exact", **kw)
    # a log with another number of rows is refused
    short = copy.deepcopy(FIXTURE["ou_retain_log"])
    short["forget_truth_ratio"]["value_by_index"].pop("0")
    with pytest.raises(ConfigError, match="forget questions"):
        bench.evaluate(collapsed, tok, reference=short, **kw)


def test_from_ou_log_by_hand():
    log = {
        "forget_truth_ratio": {
            "agg_value": 0.5,
            "value_by_index": {"10": {"score": 3.0}, "2": {"score": 2.0}, "0": {"score": 1.0}},
        },
        "mia_min_k": {"agg_value": 0.75},
        "forget_Q_A_Prob": {"agg_value": 0.1},
    }
    assert is_ou_log(log) and not is_ou_log({"benchmark": {}, **log})
    ref = from_ou_log(log)
    assert ref["splits"]["forget"]["truth_ratios"] == [1.0, 2.0, 3.0]  # by row index
    assert ref["mia"] == {"min_k": 0.75} and ref["privleak_auc"] == 0.75
    assert ref["metrics_convention"]["name"] == "open-unlearning"
    bad = {"forget_truth_ratio": {"agg_value": 1, "value_by_index": {"x": {"score": 1}}}}
    with pytest.raises(DataError, match="row indices"):
        from_ou_log(bad, "TOFU_EVAL.json")


@pytest.mark.parametrize(
    ("name", "system", "date", "source"),
    [
        ("meta-llama/Llama-3.2-1B-Instruct", SYS, "10 Apr 2025", "Llama-3"),
        ("open-unlearning/tofu_Llama-3.1-8B-Instruct_full", SYS, "10 Apr 2025", "Llama-3"),
        ("Qwen/Qwen2.5-7B-Instruct", SYS, None, "Qwen2.5"),
        ("HuggingFaceH4/zephyr-7b-beta", SYS, "10 Apr 2025", "zephyr"),
        ("google/gemma-7b-it", None, None, "gemma"),
    ],
)  # fmt: skip
def test_open_unlearning_prompt_defaults(chat_tokenizer, name, system, date, source):
    chat_tokenizer.name_or_path = name
    fmt, src = resolve_prompt_format(None, None, chat_tokenizer)
    assert (fmt.system_prompt, fmt.date_string) == (system, date)
    assert src.startswith("open-unlearning:") and source in src


def test_prompt_default_fallbacks(tiny_tokenizer, chat_tokenizer):
    tiny_tokenizer.name_or_path = "microsoft/phi-1_5"
    assert resolve_prompt_format(None, None, tiny_tokenizer)[0] == PromptFormat(chat_template=False)
    # a Llama-3 name whose tokenizer lost its chat template: the plain default
    tiny_tokenizer.name_or_path = "runs/Llama-3.2-1B-Instruct-unlearned"
    assert resolve_prompt_format(None, None, tiny_tokenizer) == (PromptFormat(), "default")
    chat_tokenizer.name_or_path = "runs/my-model"
    assert resolve_prompt_format(None, None, chat_tokenizer) == (PromptFormat(), "default")
    given = PromptFormat(system_prompt="x")
    assert resolve_prompt_format(given, None, chat_tokenizer) == (given, "given")
    model = tiny_llama(len(chat_tokenizer))
    model.config._name_or_path = "Qwen/Qwen2.5-1.5B-Instruct"
    assert resolve_prompt_format(None, model, chat_tokenizer)[1].startswith("open-unlearning")
