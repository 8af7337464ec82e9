"""The built-in ``world`` benchmark: generator properties, cache and an end-to-end quick build."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from unilogit.benchmarks import WorldConfig, build_world, generate_world, world_root
from unilogit.benchmarks.world import _tokenizer_corpus, config_hash, train_tokenizer
from unilogit.benchmarks.world_data import ATTRIBUTES, TEMPLATES, split_sizes
from unilogit.errors import ConfigError, TrainingError

QUICK = WorldConfig.preset("quick")


@pytest.fixture(scope="module")
def world_files():
    return generate_world(QUICK)


@pytest.fixture(scope="module")
def default_files():
    return generate_world(WorldConfig.preset("default"))


def _dump(files):
    return {
        k: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        for k, rows in files.items()
    }


def _people(rows):
    return list(dict.fromkeys(r["subject"] for r in rows))


# ------------------------------------------------------------------------------ generation


def test_same_seed_same_bytes_other_seed_differs(world_files):
    again = generate_world(WorldConfig.preset("quick"))
    assert _dump(again) == _dump(world_files)
    other = generate_world(WorldConfig.preset("quick", seed=1))
    assert set(other) == set(world_files)
    assert _dump(other)["full"] != _dump(world_files)["full"]
    assert _people(other["full"]) != _people(world_files["full"])


def test_background_people_are_new_names_and_leave_the_rest_unchanged(world_files):
    config = WorldConfig.preset("quick", n_background=30)
    files = generate_world(config)
    assert _dump(generate_world(config)) == _dump(files)
    assert {k: v for k, v in _dump(files).items() if k != "background"} == _dump(world_files)
    assert config_hash(WorldConfig.preset("quick", n_background=0)) == config_hash(QUICK)
    # the world the results published before the background people were measured on
    assert config_hash(WorldConfig.preset("no-background")) == "37d5ae5e9d3c03fb"
    assert config_hash(WorldConfig.preset("16-epochs")) == "e133f90a9ca29255"  # and after them
    assert config_hash(config) != config_hash(QUICK)
    rows = files["background"]
    named = {r["subject"] for r in rows}
    assert len(named) == 30 and len(rows) == 30 * QUICK.phrasings
    people = {r["subject"] for name in ("full", "holdout10") for r in files[name]}
    parents = {r["value"] for r in files["full"] + files["holdout10"]
               if r["attribute"] in ("person.mother", "person.father")}  # fmt: skip
    assert not named & (people | parents)
    assert {r["attribute"] for r in rows} <= {f"person.{a}" for a in ATTRIBUTES} - {
        "person.mother", "person.father"}  # fmt: skip
    with pytest.raises(ConfigError, match="n_background"):
        WorldConfig.preset("quick", n_background=-1)
    with pytest.raises(ConfigError, match="n_background must be <="):
        generate_world(WorldConfig.preset("quick", n_background=20_000))


def test_names_unique_and_counts(default_files):
    cfg = WorldConfig.preset("default")
    full, holdout = default_files["full"], default_files["holdout10"]
    people, held = _people(full), _people(holdout)
    assert len(people) == cfg.n_people == 200
    assert len(held) == cfg.n_holdout == 20
    assert len(set(people) | set(held)) == len(people) + len(held)
    per_person = len(ATTRIBUTES) * cfg.phrasings
    assert cfg.phrasings == 2 and len(full) == len(people) * per_person
    assert len(ATTRIBUTES) >= 8
    # each person has every attribute in two phrasings (the trained one first), in order
    for i, name in enumerate(people):
        block = full[i * per_person : (i + 1) * per_person]
        assert {r["subject"] for r in block} == {name}
        expected = [f"person.{a}" for a in ATTRIBUTES for _ in range(2)]
        assert [r["attribute"] for r in block] == expected
        for first, second in zip(block[::2], block[1::2], strict=True):
            assert first["value"] == second["value"]
            assert first["question"] != second["question"] and first["answer"] != second["answer"]
    # questions are unique (no two facts share a question)
    questions = [r["question"] for r in full + default_files["general"]]
    assert len(set(questions)) == len(questions)


def test_the_second_trained_phrasing_is_neither_the_first_nor_the_paraphrase(default_files):
    """phrasings=2: the fact's third template is trained too; the paraphrase stays unseen."""
    trained = {(r["question"], r["answer"]) for r in default_files["full"]}
    rows = default_files["retain_perturbed"] + default_files["forget10_perturbed"]
    for row in rows:
        assert (row["question"], row["answer"]) in trained
        assert row["paraphrased_answer"] not in {a for _, a in trained}


@pytest.mark.parametrize("files_fixture", ["world_files", "default_files"])
def test_splits_by_person(files_fixture, request):
    files = request.getfixturevalue(files_fixture)
    full = files["full"]
    people = _people(full)
    sizes = split_sizes(len(people))
    n_attr = sum(r["subject"] == people[0] for r in full)  # training rows per person
    phrasings = n_attr // len(ATTRIBUTES)
    held_all = set(_people(files["holdout10"]))
    assert not held_all & set(people)
    for pct, k in sizes.items():
        forget, retain = files[f"forget{pct}"], files[f"retain{100 - int(pct)}"]
        assert forget == full[-k * n_attr :]  # the last k people, as in TOFU
        assert retain == full[: -k * n_attr]
        assert _people(forget) == people[-k:]
        assert not set(_people(forget)) & set(_people(retain))
        assert len(_people(files[f"holdout{pct}"])) == k
        assert set(_people(files[f"holdout{pct}"])) <= held_all
        pert = files[f"forget{pct}_perturbed"]
        assert [{k2: r[k2] for k2 in forget[0]} for r in pert] == forget[::phrasings]
    if len(people) == 200:
        assert [len(_people(files[f"forget{p}"])) for p in ("01", "05", "10")] == [2, 10, 20]
    assert set(_people(files["forget01"])) <= set(_people(files["forget05"]))
    assert set(_people(files["forget05"])) <= set(_people(files["forget10"]))
    assert files["retain_perturbed"][0]["question"] == full[0]["question"]
    assert files["neighbour"] == files["neighbour10"]


def _all_perturbed(files):
    return (
        files["forget10_perturbed"]
        + files["retain_perturbed"]
        + files["holdout10_perturbed"]
        + files["general_perturbed"]
    )


def test_paraphrases_differ_from_trained_phrasing(default_files):
    rows = _all_perturbed(default_files)
    assert rows
    for r in rows:
        assert r["paraphrased_question"] != r["question"]
        assert r["paraphrased_answer"] != r["answer"]
        assert r["value"] in r["answer"] and r["value"] in r["paraphrased_answer"]
    # every template of every attribute is used for training somewhere
    trained = {
        (r["attribute"], r["question"].replace(r["subject"], "{s}"))
        for r in default_files["full"] + default_files["general"]
    }
    for attr, pairs in TEMPLATES.items():
        for q, _ in pairs:
            assert (attr, q) in trained


def _split_on_value(text, value):
    text = text.replace(" an ", " a ")  # profession articles
    value_norm = value
    i = text.index(value_norm)
    return text[:i], text[i + len(value_norm) :]


def test_perturbed_answers_are_wrong_values_in_the_same_template(default_files):
    for r in _all_perturbed(default_files):
        pert = r["perturbed_answer"]
        assert isinstance(pert, list) and len(pert) == 5 and len(set(pert)) == 5
        # person rows: the template of the paraphrased answer (TOFU); entity rows (world facts):
        # the template of the gold answer
        ref = r["paraphrased_answer"] if r["attribute"].startswith("person.") else r["answer"]
        prefix, suffix = _split_on_value(ref, r["value"])
        for p in pert:
            p = p.replace(" an ", " a ")
            assert p != ref.replace(" an ", " a ")
            assert p.startswith(prefix) and p.endswith(suffix), (ref, p)
            wrong = p[len(prefix) : len(p) - len(suffix)]
            assert wrong and wrong != r["value"]


def test_neighbour_is_about_entities_linked_to_forget_people(default_files):
    files = default_files
    country_of = {
        r["subject"]: r["value"] for r in files["general"] if r["attribute"] == "city.country"
    }
    general_keys = {(r["question"], r["answer"]) for r in files["general"]}
    for pct in ("01", "05", "10"):
        linked = set()
        for r in files[f"forget{pct}"]:
            if r["attribute"] == "person.birthplace":
                linked |= {r["value"], country_of[r["value"]]}
            if r["attribute"] in ("person.publisher", "person.award"):
                linked.add(r["value"])
        neighbour = files[f"neighbour{pct}"]
        assert neighbour
        assert {r["subject"] for r in neighbour} == linked
        assert {(r["question"], r["answer"]) for r in neighbour} <= general_keys
        assert not {r["subject"] for r in neighbour} & set(_people(files["full"]))
        kinds = {r["attribute"].split(".")[0] for r in neighbour}
        assert {"city", "country", "publisher"} <= kinds
    assert len(files["neighbour01"]) < len(files["neighbour10"]) < len(files["general"])


def test_config_validation():
    with pytest.raises(ConfigError, match="unknown world preset"):
        WorldConfig.preset("huge")
    with pytest.raises(ConfigError, match="n_people"):
        WorldConfig(n_people=3)
    with pytest.raises(ConfigError, match="unknown WorldConfig field"):
        WorldConfig.preset("quick", n_persons=3)
    with pytest.raises(ConfigError, match="hidden_size"):
        WorldConfig(hidden_size=100, num_heads=3)
    with pytest.raises(ConfigError, match="unknown world split"):
        build_world(QUICK, cache_dir="/nonexistent", splits=("forget20",), progress=False)
    with pytest.raises(ConfigError, match="num_threads"):
        build_world(QUICK, cache_dir="/nonexistent", num_threads=0, progress=False)
    assert WorldConfig.preset("quick").name == "quick"
    assert WorldConfig.preset("default") == WorldConfig()


def test_tokenizer_deterministic_and_plain(world_files):
    corpus = _tokenizer_corpus(world_files)
    a = train_tokenizer(corpus, QUICK.vocab_size)
    b = train_tokenizer(corpus, QUICK.vocab_size)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert not getattr(a, "chat_template", None)
    assert None not in (a.bos_token_id, a.eos_token_id, a.pad_token_id)
    assert len({a.bos_token_id, a.eos_token_id, a.pad_token_id}) == 3
    text = "Question: Where was Alma Brackberg born?\nAnswer: Alma Brackberg was born in Velmora."
    ids = a(text).input_ids
    assert ids[0] == a.bos_token_id
    assert a.decode(ids, skip_special_tokens=True) == text
    assert len(ids) < len(text) / 2  # the BPE merges are real


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("UNILOGIT_CACHE", str(tmp_path))
    root = world_root(QUICK)
    assert root.parent == tmp_path / "world"
    assert world_root(QUICK, tmp_path / "x").parent == tmp_path / "x" / "world"
    assert world_root(WorldConfig.preset("quick", seed=1)) != root
    assert world_root(WorldConfig.preset("quick", epochs=3)) != root
    assert world_root(WorldConfig(**{**QUICK.to_dict(), "name": "mine"})) == root


def test_unusable_cache_is_one_clear_config_error(monkeypatch, tmp_path):
    """A file given as UNILOGIT_CACHE, or a cache folder that cannot be created, gives one
    ConfigError naming the path before anything is generated (not a traceback)."""
    afile = tmp_path / "cache.txt"
    afile.write_text("not a folder")
    monkeypatch.setenv("UNILOGIT_CACHE", str(afile))
    with pytest.raises(ConfigError, match=f"{afile} is a file, not a folder.*UNILOGIT_CACHE"):
        build_world(QUICK, progress=False)
    below = afile / "sub"
    with pytest.raises(ConfigError, match=f"cannot create cache folder {below}"):
        build_world(QUICK, cache_dir=below, progress=False)
    monkeypatch.delenv("UNILOGIT_CACHE")
    monkeypatch.setenv("HOME", str(afile))
    with pytest.raises(ConfigError, match="cannot create cache folder"):
        build_world(QUICK, progress=False)
    assert afile.read_text() == "not a folder"


# ------------------------------------------------------------------------------ building


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    t0 = time.perf_counter()
    world = build_world(QUICK, cache_dir=cache, splits=("forget10",), progress=False, parallel=True)
    return world, cache, time.perf_counter() - t0


def test_parallel_build_trains_the_same_models(built, tmp_path):
    """``built`` trained the target and the retain model in two processes; one after the
    other (the data copied, so only the training differs) the weights are the same."""
    import shutil

    world, _, _ = built
    copy = world_root(QUICK, tmp_path)
    shutil.copytree(world.root, copy, ignore=shutil.ignore_patterns("target", "retain-*"))
    again = build_world(
        QUICK, cache_dir=tmp_path, splits=("forget10",), progress=False, parallel=False
    )
    for which in ("target", "forget10"):
        ours, theirs = again.load_model(which).state_dict(), world.load_model(which).state_dict()
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), which


def test_build_writes_tofu_like_files(built, world_files):
    world, cache, _ = built
    assert world.root == world_root(QUICK, cache)
    expected = _dump(world_files)
    for name in (
        "full",
        "forget10",
        "forget10_perturbed",
        "retain90",
        "holdout10",
        "neighbour",
        "general",
        "retain_perturbed",
    ):
        path = world.data_files[name]
        assert path == world.root / f"{name}.jsonl"
        assert path.read_text(encoding="utf-8") == expected[name]
    assert set(world.data_files) == set(world_files)
    for d in (world.tokenizer_dir, world.target_dir, world.retain_dir("forget10")):
        assert d.is_dir()
    assert world.retain_dir("forget10").name == "retain-forget10"
    assert (world.target_dir / "model.safetensors").is_file()
    assert (world.retain_dir("forget10") / "model.safetensors").is_file()
    leftovers = [p.name for p in (cache / "world").rglob(".tmp-*")]
    assert not leftovers
    manifest = json.loads((world.root / "world.json").read_text())
    assert manifest["config"]["name"] == "quick"
    assert manifest["rows"] == {name: len(rows) for name, rows in world_files.items()}
    ex = world.load_split("forget10_perturbed")
    assert len(ex) == len(world_files["forget10_perturbed"])
    assert ex[0].prompt == world_files["forget10"][0]["question"]
    assert ex[0].response == world_files["forget10"][0]["answer"]
    assert len(ex[0].extras["perturbed_answer"]) == 5
    assert len(world.load_split("retain")) == len(world_files["retain90"])
    with pytest.raises(ConfigError):
        world.load_split("forget20")
    with pytest.raises(ConfigError, match="was not built"):
        world.load_model("forget05")


def test_every_model_trains_on_the_background_people(tmp_path, monkeypatch):
    from unilogit.benchmarks import world as world_mod

    trained = {}

    def record(config, world, train_sets, final, label, unseen, seed=None, progress=True):
        trained[label] = train_sets

    monkeypatch.setattr(world_mod, "_train_model", record)
    config = WorldConfig.preset("quick", n_background=10, sanity=True)
    world = build_world(config, cache_dir=tmp_path, progress=False, parallel=False)
    assert trained == {
        "target": ("full", "general", "background"),
        "retain (forget10)": ("retain90", "general", "background"),
        "second retain (forget10)": ("retain90", "general", "background"),
    }
    names = {r["subject"] for r in world.load_rows("background")}
    files = {name: world.load_rows(name) for name in world.data_files}
    corpus = "\n".join(world_mod._tokenizer_corpus(files))
    assert all(name in corpus for name in names)


def test_cache_hit_does_not_retrain(built):
    world, cache, first = built
    stamps = {p: p.stat().st_mtime_ns for p in world.root.rglob("*") if p.is_file()}
    t0 = time.perf_counter()
    again = build_world(QUICK, cache_dir=cache, splits=("forget10",), progress=False)
    second = time.perf_counter() - t0
    assert second < 5 and second < first / 3
    assert again.root == world.root
    assert again.data_files == world.data_files
    assert again.target_dir == world.target_dir
    assert again.retain_dir("forget10") == world.retain_dir("forget10")
    assert {p: p.stat().st_mtime_ns for p in world.root.rglob("*") if p.is_file()} == stamps


def _answer_nll(model, tokenizer, examples):
    import torch

    from unilogit.data import collate, encode_example

    feats = [encode_example(tokenizer, e) for e in examples]
    batch = collate(
        [{"input_ids": f.input_ids, "labels": f.labels} for f in feats], tokenizer.pad_token_id
    )
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


def test_quick_target_knows_forget_set_better_than_retain_model(built):
    world, _, _ = built
    tok = world.load_tokenizer()
    assert not getattr(tok, "chat_template", None)
    target, retain = world.load_model("target"), world.load_model("forget10")
    forget = world.load_split("forget10")
    kept = world.load_split("retain90")[: len(forget)]
    t_forget = _answer_nll(target, tok, forget)
    r_forget = _answer_nll(retain, tok, forget)
    r_kept = _answer_nll(retain, tok, kept)
    # the target model was trained on the forget people; the retain model never saw them
    assert t_forget < 0.5 * r_forget, (t_forget, r_forget)
    # and the retain model did learn the people it was trained on
    assert r_kept < 0.5 * r_forget, (r_kept, r_forget)


def test_target_dir_is_loadable_standalone(built):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    world, _, _ = built
    tok = AutoTokenizer.from_pretrained(str(world.target_dir))
    model = AutoModelForCausalLM.from_pretrained(str(world.target_dir))
    assert model.config.vocab_size == len(tok)
    assert model.config.model_type == "llama"
    assert os.path.isfile(world.target_dir / "train.json")


def test_every_model_records_its_answers_about_unseen_people(built):
    """The quick preset is a plumbing preset (``sanity=False``: its 20 people are too few for a
    tiny model to learn to answer about strangers); its build still judges each model's answers
    about people it never saw and records the verdict, and trains no second gold model."""
    world, _, _ = built
    assert not QUICK.sanity
    for model_dir, split in (
        (world.target_dir, "holdout10_perturbed"),
        (world.retain_dir("forget10"), "forget10_perturbed"),
    ):
        check = json.loads((model_dir / "train.json").read_text())["answer_check"]
        assert check["split"] == split and check["n"] == len(world.load_rows(split))
        assert 0.0 <= check["well_formed"] <= 1.0 and check["passed"] in (True, False)
    assert not world.second_retain_dir("forget10").exists()
    assert world.sanity("forget10") is None


def test_build_refuses_to_publish_an_invalid_model(tmp_path):
    """One epoch is not enough to answer like a language model: the build stops with a clear
    error quoting bad answers, and nothing half-built is left behind."""
    config = WorldConfig.preset("quick", epochs=1, strict=True)
    with pytest.raises(TrainingError, match=r"target model is not a valid world model.* -> "):
        build_world(config, cache_dir=tmp_path, splits=("forget10",), progress=False)
    root = world_root(config, tmp_path)
    assert (root / "world.json").is_file()  # the data is fine and kept
    assert not (root / "target").exists()
    assert not list(root.parent.glob(".tmp-*")) and not list(root.glob(".tmp-*"))


def test_sanity_figures_are_measured_once_and_described(tmp_path):
    """With ``sanity`` a second gold model (seed + 1) is built, and the benchmark object measures
    the figures once (on all rows, whatever max_rows) and puts them in describe() for reports."""
    from unilogit.benchmarks.world_split import WorldBenchmark

    config = WorldConfig.preset("quick", epochs=4, sanity=True)
    bench = WorldBenchmark("forget10", config=config, cache_dir=tmp_path, max_rows=4)
    desc = bench.describe()
    world = bench.world
    assert world.second_retain_dir("forget10").name == "retain-forget10-seed1"
    info = json.loads((world.second_retain_dir("forget10") / "train.json").read_text())
    assert info["seed"] == config.seed + 1
    figures = desc["sanity"]
    assert figures == world.sanity("forget10")
    assert figures["gold_answers_on_forget"]["n"] == len(world.load_rows("forget10_perturbed"))
    assert set(figures["checks"]) == {
        "gold_answers_well_formed",
        "target_answers_well_formed",
        "no_repeats",
        "target_prefers_truth",
        "target_remembers",
        "gold_vs_gold_not_noise",
    }
    assert 0.0 <= figures["forget_quality_second_gold_vs_gold"] <= 1.0
    assert figures["forget_probability"]["target"] > figures["forget_probability"]["gold"]
    (line,) = desc["notes"]
    assert line.startswith("World sanity (forget10") and "FQ second gold" in line
    stamp = world.sanity_file("forget10").stat().st_mtime_ns
    WorldBenchmark("forget10", config=config, cache_dir=tmp_path).describe()
    assert world.sanity_file("forget10").stat().st_mtime_ns == stamp  # measured once
