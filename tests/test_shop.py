"""The ``shop`` benchmark end to end on a tiny base model built here: build, cache, evaluate,
a one-run sweep, registry and CLI wiring."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch

from tiny import tiny_llama
from unilogit.benchmarks import build_jobs
from unilogit.benchmarks import shop as shop_mod
from unilogit.benchmarks.registry import get_benchmark
from unilogit.benchmarks.shop import build_shop, shop_root
from unilogit.benchmarks.shop_bench import ShopBenchmark
from unilogit.benchmarks.shop_data import ShopConfig, generate_shop
from unilogit.benchmarks.world import train_tokenizer
from unilogit.errors import ConfigError


def _texts(files):
    out = []
    for name in ("full", "holdout", "task_train", "task", "general_candidates"):
        for r in files[name]:
            out.append(f"Question: {r['question']}\nAnswer: {r['answer']}")
            out += [" " + p for p in r.get("perturbed_answer", [])]
            if "paraphrased_question" in r:
                out.append(
                    f"Question: {r['paraphrased_question']}\nAnswer: {r['paraphrased_answer']}"
                )
    return out


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    """A tiny Llama and a BPE tokenizer trained on the quick shop's text (no chat template):
    the base model of the tests' shop."""
    path = tmp_path_factory.mktemp("tiny-base")
    files = generate_shop(ShopConfig.preset("quick"))
    tok = train_tokenizer(_texts(files), vocab_size=700)
    model = tiny_llama(len(tok), hidden=48, layers=2, max_positions=160)
    model.config.bos_token_id, model.config.eos_token_id = tok.bos_token_id, tok.eos_token_id
    model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def config(base_dir):
    return ShopConfig.preset("quick", base_model=str(base_dir), epochs=12, lr=3e-3)


def _any_text(text):
    """Stands in for ``replay_answer`` with the tiny base, whose greedy answers are gibberish
    (no finished sentence, no right answer): keep every non-empty answer. The real filter is
    tested in test_replay_rows_keep_right_first_sentences and test_shop_data.py."""
    return text.strip() or None


@pytest.fixture(scope="module")
def built(config, tmp_path_factory):
    from unilogit.benchmarks import shop_eval

    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shop_eval, "replay_answer", _any_text)
        mp.setattr(shop_eval, "_replay_ok", lambda sentence, keys: True)
        return build_shop(config, cache, progress=False, parallel=True), cache


def test_build_writes_data_models_and_sanity(built, config):
    shop, cache = built
    assert shop.root == shop_root(config, cache)
    assert shop.root.parent == cache / "shop"
    manifest = shop.manifest
    assert manifest["config"]["forget_items"] == config.forget_items
    assert manifest["base"].startswith("sha256:")
    assert manifest["chat_template"] is None  # the tiny tokenizer has none: raw format
    files = generate_shop(config)
    for stem in ("forget", "neighbour", "other", "holdout", "full", "retain", "task"):
        assert shop.load_rows(stem) == json.loads(json.dumps(files[stem]))
    for which, sets in shop_mod.MODELS.items():
        info = json.loads((shop.model_dir(which) / "train.json").read_text())
        assert info["train_sets"] == list(sets)
        assert info["rows"] == sum(len(shop.load_rows(s)) for s in sets)
        assert info["last_loss"] < info["first_loss"]
    sanity = shop.sanity()
    for key in shop_mod_thresholds():
        assert key in sanity and key in sanity["checks"]
    assert 0 <= sanity["forget_quality_target_vs_gold"] <= 1
    assert sanity["general_candidates"] == len(files["general_candidates"])
    sizes = {"forget": len(files["forget"]), "neighbour": len(files["neighbour"])}
    sizes["general"] = sanity["general_kept"]
    splits = {"target_key_em_forget": "forget", "target_key_em_neighbour": "neighbour",
              "gold_form_forget": "forget", "general_retention_target": "general"}  # fmt: skip
    for figure, split in splits.items():  # the misses are exactly the rows that failed
        misses = sanity["misses"][figure]
        if sizes[split]:
            assert len(misses) == round((1 - sanity[figure]) * sizes[split]), figure
        assert all({"question", "key", "answer"} <= set(m) for m in misses)
    assert not list(shop.root.parent.glob(".tmp-*"))  # nothing half-written left behind


def test_replay_rows_are_the_base_models_answers_in_both_training_sets(built, config):
    """Self-distillation replay: ``replay.jsonl`` holds the BASE model's own greedy answers
    (the same again when asked again: deterministic), recorded with the raw answers, none of
    them an evaluated general question, and both models trained on them."""
    from unilogit.benchmarks import shop_eval
    from unilogit.benchmarks.shop import load_base
    from unilogit.benchmarks.shop_data import MAX_NEW_TOKENS

    shop, cache = built
    replay = shop.load_rows("replay")
    candidates = generate_shop(config)["replay_candidates"]
    assert 0 < len(replay) <= len(candidates) == config.replay
    record = json.loads((shop.root / "replay_filter.json").read_text())
    assert [r["question"] for r in record] == [c["question"] for c in candidates]
    assert replay == [{"question": r["question"], "answer": r["answer"]} for r in record if r["ok"]]
    base, tok = load_base(config, cache)
    again = shop_eval.generate(base, tok, [c["question"] for c in candidates], MAX_NEW_TOKENS)
    assert [r["raw"] for r in record] == again
    general = {r["question"] for r in shop.load_rows("general_candidates")}
    assert not general & {r["question"] for r in replay}
    for which in shop_mod.MODELS:
        info = json.loads((shop.model_dir(which) / "train.json").read_text())
        assert "replay" in info["train_sets"], which
    assert shop.manifest["rows"]["replay"] == len(replay)


def test_replay_rows_keep_right_first_sentences(monkeypatch):
    from unilogit.benchmarks import shop_eval

    candidates = [
        {"question": "What is the capital of Peru?", "keys": ["Lima"]},
        {"question": "Which planet is closest to the Sun?", "keys": ["Mercury"]},
        {"question": "Who wrote Hamlet?", "keys": ["Shakespeare"]},
        {"question": "What is frozen water called?", "keys": ["ice"]},
    ]
    raw = [
        "The capital of Peru is Lima. It lies on the coast.",
        "The closest planet is Venus. Mercury is second.",  # right only after the first sentence
        "Hamlet was written by William Shakesp",  # no finished sentence
        "Frozen water is called ice!",
    ]
    monkeypatch.setattr(shop_eval, "generate", lambda model, tok, questions, *a: raw)
    rows, record = shop_eval.replay_rows(None, None, candidates, 40)
    assert rows == [
        {"question": "What is the capital of Peru?", "answer": "The capital of Peru is Lima."},
        {"question": "What is frozen water called?", "answer": "Frozen water is called ice!"},
    ]
    assert [r["ok"] for r in record] == [True, False, False, True]
    assert [r["raw"] for r in record] == raw and record[2]["answer"] is None


def shop_mod_thresholds():
    from unilogit.benchmarks.shop_eval import THRESHOLDS

    return THRESHOLDS


def test_target_knows_the_forget_seller_better_than_gold(built):
    """The target was trained on the forget rows, the gold model never: its mean NLL on
    them must be lower (the premise of Forget Quality against the gold model)."""
    from unilogit.eval.scoring import answer_token_scores

    shop, _ = built
    forget = shop.load_split("forget")
    nll = {}
    for which in ("target", "gold"):
        model, tok = shop.load_model(which)
        scores = answer_token_scores(
            model, tok, [e.prompt for e in forget], [e.response for e in forget], progress=False
        )
        nll[which] = float(np.mean([-s.logprobs.mean() for s in scores]))
    assert nll["target"] < nll["gold"] - 0.1, nll


def test_second_build_is_a_no_op(built, config, monkeypatch):
    shop, cache = built
    stamps = {p: p.stat().st_mtime_ns for p in shop.root.rglob("*") if p.is_file()}

    def boom(*a, **k):
        raise AssertionError("the cached shop was rebuilt")

    monkeypatch.setattr(shop_mod, "_train_model", boom)
    monkeypatch.setattr(shop_mod, "_build_data", boom)
    again = build_shop(config, cache, progress=False)
    assert again.root == shop.root
    assert {p: p.stat().st_mtime_ns for p in shop.root.rglob("*") if p.is_file()} == stamps


def test_a_missing_model_is_rebuilt_alone(built, config, monkeypatch, tmp_path):
    import shutil

    shop, cache = built
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    root = shop_root(config, copy)
    shutil.rmtree(root / "gold")
    (root / "sanity.json").unlink()
    trained = []
    real = shop_mod._train_model

    threads = torch.get_num_threads()
    monkeypatch.setattr(
        shop_mod,
        "_train_model",
        lambda c, s, which, *a, **kw: trained.append(which) or real(c, s, which, *a, **kw),
    )
    monkeypatch.setattr(shop_mod, "_build_data", lambda *a: pytest.fail("data rebuilt"))
    build_shop(config, copy, progress=False, num_threads=2)
    assert trained == ["gold"]
    assert torch.get_num_threads() == threads  # restored after the build
    assert (root / "gold" / "train.json").is_file() and (root / "sanity.json").is_file()


def test_lora_build_changes_only_the_named_modules(built, config, tmp_path):
    """With ``lora``, the saved model is the base with merged adapters on ``lora_modules``
    (a peft target pattern) and every other weight untouched; train.json records them."""
    import shutil

    shop, _ = built
    lora = ShopConfig(**{**config.to_dict(), "lora": True, "lora_modules": r".*\.q_proj"})
    copy = shop_mod.Shop(tmp_path / "shop", lora)
    shutil.copytree(shop.root, copy.root, ignore=shutil.ignore_patterns("target", "gold"))
    shop_mod._train_model(lora, copy, "gold", None, False)
    base = shop_mod.load_base(lora, None)[0].state_dict()
    tuned = copy.load_model("gold")[0].state_dict()
    assert tuned.keys() == base.keys()
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all(k.endswith("q_proj.weight") for k in changed)
    info = json.loads((copy.model_dir("gold") / "train.json").read_text())
    assert info["lora"] is True and info["lora_modules"] == r".*\.q_proj"


def test_frozen_embeddings_and_repeated_replay(built, config, tmp_path):
    """``freeze_embeddings`` keeps the (tied) embedding matrix of the base model while the
    blocks train; ``replay_repeats`` trains each replay row that many times (train.json)."""
    import shutil

    shop, _ = built
    variant = ShopConfig(**{**config.to_dict(), "freeze_embeddings": True, "replay_repeats": 3})
    copy = shop_mod.Shop(tmp_path / "shop", variant)
    shutil.copytree(shop.root, copy.root, ignore=shutil.ignore_patterns("target", "gold"))
    shop_mod._train_model(variant, copy, "gold", None, False)
    base = shop_mod.load_base(variant, None)[0].state_dict()
    tuned = copy.load_model("gold")[0].state_dict()
    embedding = next(k for k in base if k.endswith("embed_tokens.weight"))
    assert torch.equal(base[embedding], tuned[embedding])
    assert any(not torch.equal(base[k], tuned[k]) for k in base if "layers." in k)
    info = json.loads((copy.model_dir("gold") / "train.json").read_text())
    sets = copy.train_sets("gold")
    replay = len(copy.load_rows("replay"))
    assert replay and info["rows"] == sum(len(copy.load_rows(s)) for s in sets) + 2 * replay
    assert info["freeze_embeddings"] is True and info["replay_repeats"] == 3


def test_replay_as_kl_to_the_base_model(built, config, tmp_path, monkeypatch):
    """``replay_kl`` takes the replay rows out of the training rows; a KL-to-base term of that
    weight on every replay question with the base's own answer, right or wrong, takes their
    place, ``kl_batch_size`` KL rows per batch (train.json; its first value is 0: the model
    starts as the base)."""
    import shutil

    import unilogit.trainer as trainer_mod

    shop, _ = built
    variant = ShopConfig(**{**config.to_dict(), "replay_kl": 2.0, "kl_batch_size": 2})
    copy = shop_mod.Shop(tmp_path / "shop", variant)
    shutil.copytree(shop.root, copy.root, ignore=shutil.ignore_patterns("target", "gold"))
    calls, original = [], trainer_mod.finetune

    def spy(model, tokenizer, examples, **kwargs):
        model, history = original(model, tokenizer, examples, **kwargs)
        calls.append((examples, kwargs["retain"], kwargs["retain_weight"], history))
        assert kwargs["retain_batch_size"] == 2
        return model, history

    monkeypatch.setattr(trainer_mod, "finetune", spy)
    shop_mod._train_model(variant, copy, "gold", None, False)
    ((examples, kept, weight, history),) = calls
    asked = json.loads((copy.root / "replay_filter.json").read_text())  # every base answer
    sets = [s for s in copy.train_sets("gold") if s != "replay"]
    assert copy.load_rows("replay") and len(examples) == sum(len(copy.load_rows(s)) for s in sets)
    assert [(e.prompt, e.response) for e in kept] == [(r["question"], r["raw"]) for r in asked]
    assert weight == 2.0
    assert history.steps[0]["loss_retain"] == 0.0 and history.steps[-1]["loss_retain"] > 0
    info = json.loads((copy.model_dir("gold") / "train.json").read_text())
    assert info["rows"] == len(examples) and info["kl_rows"] == len(asked)
    assert info["replay_kl"] == 2.0 and info["kl_batch_size"] == 2


def _die_in_child(*args):
    os._exit(3)  # a worker process that dies, as one that cannot start


@pytest.mark.parametrize("worker", ("sequential", "dead worker"))
def test_parallel_build_trains_the_same_models(built, config, tmp_path, monkeypatch, worker):
    """``built`` trained the gold model in a second process (``parallel=True``); trained one
    after the other here the weights are the same. A worker that dies: a warning, and the
    model is trained in this process."""
    import shutil

    shop, _ = built
    copy = shop_mod.Shop(tmp_path / "shop", config)
    shutil.copytree(shop.root, copy.root, ignore=shutil.ignore_patterns("target", "gold"))
    if worker == "sequential":
        shop_mod._train_models(config, copy, None, False, "cpu", False, 1)
    else:
        monkeypatch.setattr(build_jobs, "_child", _die_in_child)
        with pytest.warns(UserWarning, match="a training process died"):
            shop_mod._train_models(config, copy, None, False, "cpu", True, 1)
    for which in shop_mod.MODELS:
        ours, theirs = (
            copy.load_model(which)[0].state_dict(),
            shop.load_model(which)[0].state_dict(),
        )
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), which


def test_bad_build_arguments_are_config_errors(config, tmp_path):
    with pytest.raises(ConfigError, match="num_threads"):
        build_shop(config, tmp_path, progress=False, num_threads=0)
    with pytest.raises(ConfigError, match="unknown shop preset"):
        build_shop("huge", tmp_path, progress=False)
    with pytest.raises(ConfigError, match="ShopConfig or a preset"):
        build_shop({"seed": 1}, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="device must be a torch device"):
        build_shop(config, tmp_path, progress=False, device="abacus")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA device"):
            build_shop(config, tmp_path, progress=False, device="cuda")
    assert not (tmp_path / "shop").exists()


def test_other_config_other_root(config, tmp_path):
    other = ShopConfig.preset("quick", base_model=config.base_model, epochs=12, lr=3e-3, seed=1)
    assert shop_root(other, tmp_path) != shop_root(config, tmp_path)
    relabelled = ShopConfig(**{**config.to_dict(), "name": "renamed"})
    assert shop_root(relabelled, tmp_path) == shop_root(config, tmp_path)
    unused = ShopConfig(**{**config.to_dict(), "lora_modules": "q_proj"})
    assert shop_root(unused, tmp_path) == shop_root(config, tmp_path)
    lora = ShopConfig(**{**config.to_dict(), "lora": True})
    other_modules = ShopConfig(**{**lora.to_dict(), "lora_modules": "q_proj"})
    frozen = ShopConfig(**{**config.to_dict(), "freeze_embeddings": True})
    repeated = ShopConfig(**{**config.to_dict(), "replay_repeats": 2})
    distilled = ShopConfig(**{**config.to_dict(), "replay_kl": 1.0})
    fewer_kl = ShopConfig(**{**distilled.to_dict(), "kl_batch_size": 4})
    variants = (config, lora, other_modules, frozen, repeated, distilled, fewer_kl)
    assert len({shop_root(c, tmp_path) for c in variants}) == len(variants)
    # fields added later are not hashed at their defaults: earlier builds keep their names
    fields = {k: v for k, v in config.to_dict().items() if k not in shop_mod._UNHASHED_DEFAULTS}
    blob = {"format": shop_mod.FORMAT_VERSION, "base": "b", **fields}
    del blob["name"], blob["base_model"], blob["lora_modules"]
    digest = hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]
    assert shop_mod.config_hash(config, "b") == digest


def test_unknown_base_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="neither 'smollm2' nor a local model"):
        shop_root(ShopConfig.preset("quick", base_model=str(tmp_path / "nope")), tmp_path)


def test_benchmark_evaluates_with_gold(built, config):
    shop, cache = built
    bench = ShopBenchmark(config=config, cache_dir=cache, progress=False, shop=shop)
    desc = bench.describe()
    assert desc["name"] == "shop" and desc["shop_hash"] == shop.root.name
    assert desc["fine_tuning"] == "full"
    assert "sanity_target_key_em_forget" in desc
    assert len(bench.forget()) == len(shop.load_rows("forget"))
    trained = ("retain", "task_train", "replay")  # what the gold model was fine-tuned on
    assert len(bench.retain()) == sum(len(shop.load_rows(n)) for n in trained)
    target, tok = bench.target_model()
    gold, _ = bench.gold_model()
    opts = {"max_new_tokens": 8}
    ref = bench.gold_baseline(bench.evaluate(gold, tok, progress=False, **opts))
    res = bench.evaluate(target, tok, reference=ref, gold_model=gold, progress=False, **opts)
    flat = bench.summarize(res)
    for col in bench.columns:
        if col.key not in ("general/score",):  # the tiny base knows no general facts
            assert col.key in flat, col.key
    for key in ("forget/key_em", "neighbour/key_em", "retain/key_em", "task/score"):
        assert 0.0 <= flat[key] <= 1.0
    assert {"task/score_category", "task/score_price_band", "task/score_extract"} <= set(flat)
    assert flat["forget_quality"] < 1.0 and flat["forget/kl_to_gold"] > 0
    assert bench.summarize(ref)["forget_quality"] == 1.0


def test_registry_and_cli_options(tmp_path):
    import argparse

    from unilogit.cli import options as opt
    from unilogit.cli.main import make_parser

    bench = get_benchmark("shop", preset="small", cache_dir=tmp_path, progress=False)
    assert isinstance(bench, ShopBenchmark) and bench.config.name == "small"
    assert not (tmp_path / "shop").exists()  # built on first use, not on construction
    args = make_parser().parse_args(
        ["bench", "--benchmark", "shop", "--preset", "quick", "--cache-dir", str(tmp_path),
         "--output", str(tmp_path / "out")]
    )  # fmt: skip
    assert isinstance(args, argparse.Namespace)
    bench = opt.get_benchmark(args)
    assert isinstance(bench, ShopBenchmark) and bench.config.name == "quick"
    with pytest.raises(ConfigError, match="no splits"):
        get_benchmark("shop:forget10")


def test_sweep_one_method_one_epoch(built, config, tmp_path):
    from unilogit.sweep import run_sweep

    shop, cache = built
    bench = ShopBenchmark(config=config, cache_dir=cache, progress=False, shop=shop)
    result = run_sweep(
        bench,
        ["unilogit"],
        [1e-3],
        [1],
        tmp_path / "out",
        train_options={"batch_size": 8, "max_length": 96},
        eval_options={"max_new_tokens": 8},
        progress=False,
        autostop=False,
    )
    records = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    kinds = {(r.get("kind"), r.get("method")) for r in records}
    assert ("baseline", "retain") in kinds and ("baseline", "target") in kinds
    runs = [r for r in records if r.get("kind") == "run"]
    assert runs and all("forget/key_em" in r and "task/score" in r for r in runs)
    report = result.report["md"].read_text()
    assert "key EM forget" in report and "sanity_target_key_em_forget" in report


def test_sizing_counts_steps_and_times_them(config):
    import math

    from unilogit.benchmarks.shop_sizing import build_steps, time_steps

    files = generate_shop(config)
    plan = build_steps(config)
    rows = len(files["full"]) + len(files["task_train"]) + len(files["replay_candidates"])
    assert plan["target"] == {"rows": rows, "steps": math.ceil(rows / 8) * config.epochs}
    assert plan["steps"] == plan["target"]["steps"] + plan["gold"]["steps"]
    assert plan["parallel_steps"] == max(plan["target"]["steps"], plan["gold"]["steps"])
    timing = time_steps(config, steps=2)
    assert timing["wall_s_per_step"] > 0 and timing["cpu_s_per_step"] > 0
    assert timing["threads"] == 1 and timing["tokens_per_row"] > 5
    distilled = ShopConfig(**{**config.to_dict(), "replay_kl": 1.0})  # replay: no steps
    rows -= len(files["replay_candidates"])
    assert build_steps(distilled)["target"]["steps"] == math.ceil(rows / 8) * config.epochs
    assert time_steps(distilled, steps=2)["cpu_s_per_step"] > 0
    frozen = ShopConfig(**{**config.to_dict(), "freeze_embeddings": True})  # timed as built
    assert time_steps(frozen, steps=1)["trainable_params"] < timing["trainable_params"]


def test_recipe_script_reads_a_cached_build_and_interpolates(built, config, monkeypatch, tmp_path):
    """benchmarks/shop_recipes.py: a recipe whose shop is cached gives one JSON line with its
    sanity figures; a = 1 reproduces the target's own key EM on the forget rows, a = 0 gives the
    base model's figures."""
    import importlib.util
    from pathlib import Path

    shop, cache = built
    monkeypatch.setenv("UNILOGIT_CACHE", str(cache))
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "shop_recipes.py"
    spec = importlib.util.spec_from_file_location("unilogit_shop_recipes", path)
    recipes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipes)
    recipe = {"base_model": config.base_model, "epochs": config.epochs, "lr": config.lr}
    out = tmp_path / "grid.jsonl"
    recipes.main(["--preset", "quick", "--recipe", json.dumps(recipe), "--device", "cpu",
                  "--interpolate", "1,0", "--output", str(out)])  # fmt: skip
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["hash"] == shop.root.name and row["target_steps"] > 0
    assert row["target_key_em_forget"] == shop.sanity()["target_key_em_forget"]
    assert row["interpolated"]["1.0"]["forget"] == row["target_key_em_forget"]
    base, tok = shop_mod.load_base(config, cache)
    assert row["interpolated"]["0.0"] == recipes.target_figures(base, tok, shop)
