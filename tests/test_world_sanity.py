"""Judging world answers: the answer-form and repeated-token checks, and the publish gate."""

from __future__ import annotations

import pytest

from unilogit.benchmarks import WorldConfig, generate_world
from unilogit.benchmarks.world_sanity import AnswerCheck, answer_form, repeats_token
from unilogit.errors import TrainingError

ROW = {"attribute": "person.birthplace", "subject": "Celine Quastmont", "value": "Velona"}


@pytest.mark.parametrize(
    "answer",
    [
        "Celine Quastmont was born in Velona.",  # the true value
        "Celine Quastmont was born in Darport.",  # a wrong city: still well-formed
        " The birthplace of Celine Quastmont is Casesse. ",  # another template, spaces
        "Celine Quastmont comes from the city of Solavik.",
    ],
)
def test_well_formed_answers(answer):
    assert answer_form(answer, ROW)


@pytest.mark.parametrize(
    "answer",
    [
        "Celine Celine Celine Celine",  # degenerate
        "Celine Quastmont was born in 1968.",  # a year is not a city
        "Celine Zellwick was born in Velona.",  # another person
        "Celine Quastmont was born in Velona. Celine",  # trailing text
        "The birthplace of Celine Quastmont is Velona",  # no full stop
        "Celine Quastmont was born in Arda.",  # not a city of the world's pool
    ],
)
def test_malformed_answers(answer):
    assert not answer_form(answer, ROW)


def test_value_kinds_per_attribute():
    year = {"attribute": "person.birth_year", "subject": "Ivo Dornby", "value": "1950"}
    assert answer_form("Ivo Dornby was born in the year 1932.", year)
    assert not answer_form("Ivo Dornby was born in the year Velona.", year)
    job = {"attribute": "person.profession", "subject": "Ivo Dornby", "value": "poet"}
    assert answer_form("Ivo Dornby works as an essayist.", job)
    assert not answer_form("Ivo Dornby works as a fantasy.", job)  # a genre
    mother = {"attribute": "person.mother", "subject": "Ivo Dornby", "value": "Alma Dornby"}
    assert answer_form("The mother of Ivo Dornby is Freya Dornby.", mother)
    assert not answer_form("The mother of Ivo Dornby is Bruno Dornby.", mother)  # a man's name


def test_every_generated_answer_is_well_formed_and_never_repeats():
    """The world's own answers, paraphrases and perturbed answers all pass the checks (so a
    failure of a model is the model's); ids: the characters, a worst case for repeats."""
    files = generate_world(WorldConfig.preset("quick"))
    n = 0
    for stem in ("forget10_perturbed", "retain_perturbed", "general_perturbed"):
        for row in files[stem]:
            person = row["attribute"].startswith("person.")
            texts = [row["answer"], *([row["paraphrased_answer"]] if person else [])]
            texts += row["perturbed_answer"]
            for text in texts:
                assert answer_form(text, row), (stem, text)
                n += 1
    assert n > 500


def test_repeats_token():
    assert repeats_token([5, 7, 7, 7, 2])
    assert not repeats_token([5, 7, 7, 2, 7, 7])
    assert not repeats_token([])
    assert repeats_token([1, 1], run=2)


def test_gate_refuses_and_quotes_failures():
    ok = AnswerCheck("gold", "forget10", 10, 0.9, 0, 0.1)
    ok.require()
    few = AnswerCheck("gold", "forget10", 10, 0.8, 0, 0.0, [("Where?", "Celine Celine")])
    with pytest.raises(TrainingError, match=r"80% .* well-formed .*'Where\?' -> 'Celine Celine'"):
        few.require()
    looping = AnswerCheck("target", "holdout10", 10, 1.0, 1, 0.0)
    assert not looping.passed  # 1 in 10 > 1 %
    with pytest.raises(TrainingError, match="1 repeat a token"):
        looping.require()
    assert AnswerCheck("target", "holdout10", 180, 0.95, 1, 0.0).passed  # 1 in 180 <= 1 %
    assert not AnswerCheck("target", "holdout10", 180, 0.95, 2, 0.0).passed


def test_small_world_models_answer_like_language_models(tmp_path):
    """The answer-form requirement on a world built in the test (``small``: the smallest preset
    whose models pass; the ``quick`` world's 20 people are too few, docs/world.md): the gold
    model on the forget people and the target on the holdout people give at least 90 %
    well-formed answers and no answer repeats a token three times in a row. The build is strict,
    so it published them only after the same judgement; here the published models are judged
    again from their own greedy answers, and the verdicts recorded at training must agree."""
    import json

    from unilogit.benchmarks import build_world
    from unilogit.benchmarks.world_sanity import check_answers

    config = WorldConfig.preset("small")
    assert config.strict and config.n_holdout >= 10
    world = build_world(config, cache_dir=tmp_path, splits=("forget10",), progress=False)
    tokenizer = world.load_tokenizer()
    for name, model_dir, split in (
        ("forget10", world.retain_dir("forget10"), "forget10_perturbed"),
        ("target", world.target_dir, "holdout10_perturbed"),
    ):
        rows = world.load_rows(split)
        check = check_answers(world.load_model(name), tokenizer, rows, model_name=name, split=split)
        assert check.n == len(rows) >= 90
        assert check.well_formed >= 0.9, (name, check.failures)
        assert check.repeating == 0, (name, check.failures)
        assert check.correct < 0.5 * check.well_formed  # wrong values: it never saw them
        recorded = json.loads((model_dir / "train.json").read_text())["answer_check"]
        assert recorded["well_formed"] == round(check.well_formed, 4) and recorded["passed"]
