"""The ``shop`` benchmark's generator: determinism, disjoint splits, near-duplicates, rows."""

from __future__ import annotations

import json

import pytest

from unilogit.benchmarks.shop_data import (
    CATEGORIES,
    GENERAL_QUESTIONS,
    ITEM_ATTRIBUTES,
    REPLAY_QUESTIONS,
    SELLER_ATTRIBUTES,
    ShopConfig,
    generate_shop,
    has_form,
    key_match,
    price_band,
    replay_answer,
)
from unilogit.errors import ConfigError

PRESETS = ("quick", "small", "default")


@pytest.fixture(scope="module")
def shops():
    return {p: generate_shop(ShopConfig.preset(p)) for p in PRESETS}


def _dump(files):
    return {k: json.dumps(v, sort_keys=True) for k, v in files.items()}


def test_same_seed_same_rows_other_seed_differs(shops):
    again = generate_shop(ShopConfig.preset("small"))
    assert _dump(again) == _dump(shops["small"])
    other = generate_shop(ShopConfig.preset("small", seed=1))
    assert set(other) == set(again)
    assert _dump(other)["forget"] != _dump(again)["forget"]
    assert {s["name"] for s in other["sellers"]} != {s["name"] for s in again["sellers"]}


def test_the_label_does_not_change_the_data():
    a = generate_shop(ShopConfig.preset("small"))
    b = generate_shop(ShopConfig(**{**ShopConfig.preset("small").to_dict(), "name": "x"}))
    assert _dump(a) == _dump(b)


@pytest.mark.parametrize("preset", PRESETS)
def test_counts_and_unique_names(shops, preset):
    cfg, files = ShopConfig.preset(preset), shops[preset]
    sellers = files["sellers"]
    groups = [s["group"] for s in sellers]
    assert groups.count("forget") == cfg.forget_sellers
    assert groups.count("neighbour") == cfg.neighbour_sellers
    assert groups.count("other") == cfg.other_sellers
    assert groups.count("holdout") == cfg.holdout_sellers
    assert len({s["name"] for s in sellers}) == len(sellers)
    titles = [i["title"] for i in files["items"]]
    assert len(titles) == cfg.n_items == len(set(titles))
    n_seller_rows = len(SELLER_ATTRIBUTES)
    assert len(files["forget"]) == cfg.forget_sellers * (
        n_seller_rows + cfg.forget_items * cfg.questions_per_item
    )
    for group, n in (("neighbour", cfg.neighbour_sellers), ("other", cfg.other_sellers)):
        per_seller = n_seller_rows + cfg.items_per_seller * cfg.questions_per_item
        assert len(files[group]) == n * per_seller
    # no two rows ask the same question (so a forget question is never a retain question)
    questions = [
        r["question"] for g in ("forget", "neighbour", "other", "holdout") for r in files[g]
    ]
    assert len(set(questions)) == len(questions)


@pytest.mark.parametrize("preset", PRESETS)
def test_splits_are_disjoint_by_seller(shops, preset):
    files = shops[preset]
    sellers_of = {
        g: {r["seller"] for r in files[g]} for g in ("forget", "neighbour", "other", "holdout")
    }
    groups = list(sellers_of)
    for i, a in enumerate(groups):
        for b in groups[i + 1 :]:
            assert not sellers_of[a] & sellers_of[b], (a, b)
    for g in groups:
        assert {r["group"] for r in files[g]} == {g}
        items = {r["item"] for r in files[g] if r["item"]}
        assert items <= {i["title"] for i in files["items"] if i["group"] == g}
    assert files["full"] == files["forget"] + files["neighbour"] + files["other"]
    assert files["retain"] == files["neighbour"] + files["other"]
    # task probes only about items the trained models know and keep (never forget / holdout)
    known = {i["title"] for i in files["items"] if i["group"] in ("neighbour", "other")}
    for name in ("task", "task_train"):
        assert {r["item"] for r in files[name]} <= known
    assert not {r["item"] for r in files["task"]} & {r["item"] for r in files["task_train"]}
    assert {r["task"] for r in files["task"]} == {"category", "price_band", "extract"}


def test_neighbours_are_near_duplicates_of_forget_items(shops):
    files = shops["default"]
    by_title = {i["title"]: i for i in files["items"]}
    neighbours = [i for i in files["items"] if i["group"] == "neighbour"]
    assert neighbours
    for item in neighbours:
        twin = by_title[item["twin"]]
        assert twin["group"] == "forget"
        assert (item["brand"], item["category"], item["product"]) == (
            twin["brand"],
            twin["category"],
            twin["product"],
        )
        assert item["title"] != twin["title"]
    # the neighbour rows ask the same attributes as their twins
    asked = {}
    for r in files["forget"]:
        asked.setdefault(r["item"], set()).add(r["attribute"])
    for r in files["neighbour"]:
        if r["item"]:
            assert r["attribute"] in asked[by_title[r["item"]]["twin"]]
    assert all(i["twin"] is None for i in files["items"] if i["group"] != "neighbour")


def test_rows_are_tofu_like(shops):
    files = shops["default"]
    for r in files["forget"] + files["neighbour"] + files["holdout"]:
        assert r["key"] in r["answer"] and r["key"] in r["paraphrased_answer"]
        assert r["paraphrased_question"] != r["question"]
        assert len(r["perturbed_answer"]) == 5 == len(set(r["perturbed_answer"]))
        for p in r["perturbed_answer"]:
            assert not key_match(p, r["key"]), (p, r["key"])  # a wrong value
            assert has_form(r["attribute"], p), (r["attribute"], p)  # of the right kind
        assert has_form(r["attribute"], r["answer"])
        # perturbed = the paraphrased answer with another value in the key's place (TOFU)
        head, _, tail = r["paraphrased_answer"].partition(r["key"])
        assert all(p.startswith(head) and p.endswith(tail) for p in r["perturbed_answer"])
    attrs = {r["attribute"] for r in files["full"]}
    assert attrs == set(ITEM_ATTRIBUTES) | set(SELLER_ATTRIBUTES)


def test_task_probes_are_right(shops):
    files = shops["default"]
    by_title = {i["title"]: i for i in files["items"]}
    for r in files["task"] + files["task_train"]:
        item = by_title[r["item"]]
        assert key_match(r["answer"], r["key"])
        if r["task"] == "category":
            assert r["key"] == item["category"] in CATEGORIES
        elif r["task"] == "price_band":
            assert r["key"] == price_band(item["price"])
        else:
            assert r["key"] in (item["material"], item["color"])
            assert r["key"] in r["question"]  # extraction: the answer is in the prompt


def test_price_band_key_match_and_forms():
    assert [price_band(p) for p in ("$4.99", "$24.99", "$25.99", "$100.00", "$100.99")] == [
        "budget",
        "budget",
        "mid-range",
        "mid-range",
        "premium",
    ]
    assert key_match("It costs $14.99.", "$14.99")
    assert not key_match("It costs $14.99.", "$4.99")
    assert not key_match("rated 14.3", "4.3")
    assert key_match("The capital is PARIS.", ["paris"])
    assert not key_match("the colour is redwood", "red")
    assert has_form("price", "sells it for $3.99")
    assert not has_form("price", "I do not know")
    assert has_form("material", "made of oak.") and not has_form("material", "made of love.")
    assert has_form("rating", "rated 4.2 out of 5") and not has_form("rating", "rated well")
    seller = ("Redhill Supply", None)
    for answer in ("The contact person at Redhill Supply is Alex Martin.", "Leon Thorne does."):
        assert has_form("contact", answer, seller)
    assert not has_form("contact", "The contact person at Redhill Supply is unknown.", seller)
    assert has_form("location", "The seller Redhill Supply is based in Vienna.", seller)
    assert not has_form("location", "Redhill Supply is based online.", seller)


def test_general_candidates_fixed():
    files = generate_shop(ShopConfig.preset("quick"))
    assert [r["question"] for r in files["general_candidates"]] == [q for q, _ in GENERAL_QUESTIONS]
    assert len(GENERAL_QUESTIONS) >= 30
    assert len({q for q, _ in GENERAL_QUESTIONS}) == len(GENERAL_QUESTIONS)


@pytest.mark.parametrize("preset", PRESETS)
def test_replay_questions_are_fixed_and_never_evaluated(shops, preset):
    cfg, files = ShopConfig.preset(preset), shops[preset]
    asked = [r["question"] for r in files["replay_candidates"]]
    assert asked == [q for q, _ in REPLAY_QUESTIONS[: cfg.replay]] and len(asked) == cfg.replay
    assert all(r["keys"] for r in files["replay_candidates"])
    replay = {q.lower() for q, _ in REPLAY_QUESTIONS}
    assert len(replay) == len(REPLAY_QUESTIONS)
    evaluated = {q.lower() for q, _ in GENERAL_QUESTIONS}
    evaluated |= {
        r["question"].lower() for name in ("full", "holdout", "task") for r in files[name]
    }
    assert not evaluated & replay
    assert generate_shop(ShopConfig.preset(preset, replay=0))["replay_candidates"] == []


def test_replay_answer_keeps_the_first_finished_sentence():
    assert replay_answer(" The capital of Peru is Lima. It is large.") == (
        "The capital of Peru is Lima."
    )
    assert replay_answer("It is 4.27 light-years away. Far!") == "It is 4.27 light-years away."
    assert replay_answer("The first President was John F. Kennedy. No") == (
        "The first President was John F. Kennedy."
    )
    assert replay_answer("Is it?\nYes.") == "Is it?"
    assert replay_answer("The answer is cut by the token lim") is None
    assert replay_answer("") is None


def test_config_validation():
    with pytest.raises(ConfigError, match="unknown shop preset"):
        ShopConfig.preset("huge")
    with pytest.raises(ConfigError, match="unknown ShopConfig field"):
        ShopConfig.preset("quick", sellers=3)
    with pytest.raises(ConfigError, match="forget_items"):
        ShopConfig(forget_items=0)
    with pytest.raises(ConfigError, match="must be an integer"):
        ShopConfig(epochs=2.5)
    with pytest.raises(ConfigError, match="task_train"):
        ShopConfig(other_sellers=1, items_per_seller=5, task_train=6)
    with pytest.raises(ConfigError, match="too many"):
        ShopConfig(forget_items=5000)
    with pytest.raises(ConfigError, match="replay must be at most"):
        ShopConfig(replay=len(REPLAY_QUESTIONS) + 1)
    with pytest.raises(ConfigError, match="replay too small"):
        ShopConfig(replay=-1)
    with pytest.raises(ConfigError, match="lora_modules"):
        ShopConfig(lora_modules="")
    with pytest.raises(ConfigError, match="replay_repeats too small"):
        ShopConfig(replay_repeats=0)
    with pytest.raises(ConfigError, match="freeze_embeddings must be a bool"):
        ShopConfig(freeze_embeddings=1)
    for bad in (-0.5, True, "1"):
        with pytest.raises(ConfigError, match="replay_kl must be a number >= 0"):
            ShopConfig(replay_kl=bad)
    with pytest.raises(ConfigError, match="replay_repeats has no effect"):
        ShopConfig(replay_kl=1.0, replay_repeats=2)
    with pytest.raises(ConfigError, match="kl_batch_size needs replay_kl > 0"):
        ShopConfig(kl_batch_size=4)
    with pytest.raises(ConfigError, match="kl_batch_size too small"):
        ShopConfig(replay_kl=1.0, kl_batch_size=-1)
    # one data set, three replay recipes: KL with 4 rows per step (default), NLL rows, KL with 8
    nll = ShopConfig.preset("nll-replay").to_dict()
    assert nll == {**ShopConfig().to_dict(), "name": "nll-replay"}
    default = {**nll, "name": "default", "replay_kl": 1.0, "kl_batch_size": 4}
    assert ShopConfig.preset().to_dict() == default
    distilled = {**default, "name": "distilled", "kl_batch_size": 0}
    assert ShopConfig.preset("distilled").to_dict() == distilled


@pytest.mark.parametrize("preset", ("small", "default"))
def test_every_item_attribute_is_asked_equally_often(shops, preset):
    """Items that are not near-duplicates are asked about attributes dealt from shuffled
    decks: over the whole shop, the counts of any two attributes differ by at most one deck's
    worth (1), so no attribute's answer form is learned from a handful of rows."""
    files = shops[preset]
    twins = {i["title"] for i in files["items"] if i["twin"] is not None}
    counts = dict.fromkeys(ITEM_ATTRIBUTES, 0)
    for group in ("forget", "neighbour", "other", "holdout"):
        for r in files[group]:
            if r["item"] and r["item"] not in twins:
                counts[r["attribute"]] += 1
    assert max(counts.values()) - min(counts.values()) <= 1, counts
