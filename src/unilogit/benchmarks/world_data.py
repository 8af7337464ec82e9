"""The data of the built-in ``world`` benchmark: a TOFU-like world of fictitious people.

Everything here is pure (no I/O, no torch): :func:`generate_world` turns a
:class:`WorldConfig` into the rows of every JSONL file, deterministically from ``config.seed``.

The world
---------
* ``n_people`` fictitious writers (plus ``n_holdout`` = 10 % more, never trained on), each with
  nine attributes drawn at random: birthplace (a city), birth year, profession, genre, mother,
  father, a book, an award and a publisher. Names are combinations of a first name and a
  syllable-built surname, sampled without replacement, so they are unique.
* Entities those people link to: cities (country, river), countries (capital, language),
  publishers (city, founding year) and awards (city where presented). Their facts form the
  ``general`` utility set; the facts about entities linked to the forget people form the
  ``neighbour`` set (collateral-damage probes).

Phrasings
---------
Every attribute has three (question, answer) template pairs. For each fact one pair, chosen at
random, is the trained phrasing (``question``/``answer``); another one gives
``paraphrased_question``/``paraphrased_answer``. All templates occur in training (for other
facts), so a paraphrase is a familiar phrasing of an unseen (fact, phrasing) combination.
``perturbed_answer`` holds five answers with wrong values, written with the same template as
the answer the truth ratio compares them with (as in TOFU): the paraphrased answer for person
rows, the gold answer itself for entity rows (``general``/``neighbour``, like TOFU's
``world_facts``).

Rows
----
Plain files (``full``, ``forget10``, ``retain90``, ``holdout10``, ``general``, ``neighbour``, ...)
hold ``question``, ``answer``, ``subject``, ``attribute``, ``value``; ``*_perturbed`` files add
``paraphrased_answer``, ``perturbed_answer`` (list of 5) and ``paraphrased_question``.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from dataclasses import dataclass
from typing import Any

from unilogit.errors import ConfigError

__all__ = [
    "ATTRIBUTES",
    "FORGET_PERCENTS",
    "WorldConfig",
    "generate_world",
    "split_sizes",
]

FORGET_PERCENTS = ("01", "05", "10")
N_PERTURBED = 5

# ---------------------------------------------------------------------------------------------
# Pools (invented; combinations are sampled without replacement, so names are unique)
# ---------------------------------------------------------------------------------------------

FEMALE_FIRST = (
    "Alma Beatrix Celine Dalia Edith Freya Greta Helena Ilse Jolene Katya Liora Marisol Nadia "
    "Odette Petra Rosalind Selma Tamsin Ursula Vera Wren Yara Zelda Amara Brigitte Clio Dagny "
    "Esme Fenna Gisela Hilde"
).split()
MALE_FIRST = (
    "Anselm Bruno Cyril Dorian Emil Felix Gideon Hugo Ivo Jasper Kasimir Leopold Matthias "
    "Niklas Oswin Piet Rafael Stellan Tobias Ulrich Viktor Walter Xaver Yannick Zeno Ambrose "
    "Bertram Corin Dietrich Edmund Florian Gunnar"
).split()
SURNAME_HEADS = (
    "Brack Dorn Falk Grun Hal Kell Lind Mor Norr Ost Pell Quast Rav Sand Thal Ulm Vass Wend "
    "Yor Zell"
).split()
SURNAME_TAILS = "berg holt mark strand wick ley feld mont ard ing wood by".split()

CITY_HEADS = "Vel Dar Mir Cas Tor Bel Aren Sol Kor Lun Ves Pra Ond Gal Riv Eld".split()
CITY_TAILS = "mora dell avik ona heim port ara esse grad wyn".split()
COUNTRY_HEADS = "Ar Bor Cal Dra Es Fen Gor Hel Ist Jor Kal Lor Mav Nor".split()
COUNTRY_TAILS = "tavia mundia ovia eria akand ovar ustan ithia".split()
LANGUAGES = (
    "Orvish Talmeric Sunari Velkan Ostric Pelagan Durvic Amaric Zorathi Kestric Lunesh "
    "Marovian Threnic Callish Ebrani Quorish"
).split()
RIVERS = tuple(
    f"{w} River"
    for w in (
        "Selva Aunder Morrow Kessel Ondra Brinn Lyr Vashti Corran Ystra Halde Nerys Tamber "
        "Oskel Wyre Dunmere"
    ).split()
)
PUBLISHER_HEADS = (
    "Amber Copper Iron Silver Willow Raven Harbor Lantern Meadow Thistle Granite Juniper "
    "Falcon Ember Cedar Marble"
).split()
PUBLISHER_TAILS = ("leaf Press", "gate Books", "stone House", "field Publishing", "wood Press")
AWARD_HEADS = "Silver Golden Crimson Azure Ivory Emerald Obsidian Scarlet Cobalt Jade".split()
AWARD_TAILS = "Quill Lantern Compass Feather Laurel Key Anchor Crown".split()

PROFESSIONS = (
    "novelist",
    "poet",
    "journalist",
    "historian",
    "playwright",
    "essayist",
    "biographer",
    "screenwriter",
    "translator",
    "critic",
    "editor",
    "columnist",
    "lyricist",
    "memoirist",
    "satirist",
    "librarian",
)
GENRES = (
    "mystery",
    "fantasy",
    "science fiction",
    "romance",
    "horror",
    "historical fiction",
    "thriller",
    "satire",
    "poetry",
    "travel writing",
    "crime fiction",
    "adventure",
    "magical realism",
    "dystopian fiction",
    "literary fiction",
    "children's literature",
)
BOOK_ADJECTIVES = (
    "Silent Hidden Broken Forgotten Distant Burning Hollow Endless Fading Frozen Wandering "
    "Last Quiet Shattered Bitter Gentle Restless Sunken Velvet Northern"
).split()
BOOK_NOUNS = (
    "Harbor Garden Mirror Orchard Tower Winter Letter Island Bridge Forest Meadow Voyage "
    "Signal Archive Echo Threshold Tide Lighthouse Kingdom Promise"
).split()
BIRTH_YEARS = tuple(str(y) for y in range(1921, 2000))
FOUNDING_YEARS = tuple(str(y) for y in range(1801, 1991))

# ---------------------------------------------------------------------------------------------
# Templates: attribute -> three (question, answer) pairs. {s} subject, {v} value,
# {a_v} value with its indefinite article.
# ---------------------------------------------------------------------------------------------

TEMPLATES: dict[str, tuple[tuple[str, str], ...]] = {
    "person.birthplace": (
        ("Where was {s} born?", "{s} was born in {v}."),
        ("What is the birthplace of {s}?", "The birthplace of {s} is {v}."),
        ("In which city was {s} born?", "{s} comes from the city of {v}."),
    ),
    "person.birth_year": (
        ("In which year was {s} born?", "{s} was born in {v}."),
        ("What is the birth year of {s}?", "The birth year of {s} is {v}."),
        ("When was {s} born?", "{s} was born in the year {v}."),
    ),
    "person.profession": (
        ("What is the profession of {s}?", "{s} works as {a_v}."),
        ("What does {s} do for a living?", "{s} earns a living as {a_v}."),
        ("What is the occupation of {s}?", "By occupation, {s} is {a_v}."),
    ),
    "person.genre": (
        ("Which genre does {s} write in?", "{s} writes in the genre of {v}."),
        ("What kind of books does {s} write?", "{s} is known for {v}."),
        ("What is the literary genre of {s}?", "The literary genre of {s} is {v}."),
    ),
    "person.mother": (
        ("Who is the mother of {s}?", "The mother of {s} is {v}."),
        ("What is the name of the mother of {s}?", "The mother of {s} is called {v}."),
        ("Who is the mother of the writer {s}?", "{s} was raised by a mother named {v}."),
    ),
    "person.father": (
        ("Who is the father of {s}?", "The father of {s} is {v}."),
        ("What is the name of the father of {s}?", "The father of {s} is called {v}."),
        ("Who is the father of the writer {s}?", "{s} was raised by a father named {v}."),
    ),
    "person.book": (
        ("What is the title of a book by {s}?", "{s} wrote the book {v}."),
        ("Which book did {s} write?", "One of the books of {s} is {v}."),
        ("Name a book written by {s}.", "A book written by {s} is {v}."),
    ),
    "person.award": (
        ("Which award did {s} win?", "{s} won the {v}."),
        ("What prize has {s} received?", "{s} received the {v}."),
        ("Which honour was given to {s}?", "{s} was honoured with the {v}."),
    ),
    "person.publisher": (
        ("Who publishes the books of {s}?", "The books of {s} are published by {v}."),
        ("Which publisher works with {s}?", "{s} works with the publisher {v}."),
        ("What is the name of the publisher of {s}?", "The publisher of {s} is {v}."),
    ),
    "country.capital": (
        ("What is the capital of {s}?", "The capital of {s} is {v}."),
        ("Which city is the capital of {s}?", "{v} is the capital of {s}."),
        ("Name the capital city of {s}.", "The capital city of {s} is {v}."),
    ),
    "country.language": (
        ("What language is spoken in {s}?", "People in {s} speak {v}."),
        ("What is the official language of {s}?", "The official language of {s} is {v}."),
        ("Which language do people in {s} speak?", "The language of {s} is {v}."),
    ),
    "city.country": (
        ("In which country is {s}?", "{s} is a city in {v}."),
        ("Which country is {s} located in?", "{s} is located in {v}."),
        ("The city of {s} lies in which country?", "The city of {s} lies in {v}."),
    ),
    "city.river": (
        ("Which river flows through {s}?", "The {v} flows through {s}."),
        ("On which river does {s} lie?", "{s} lies on the {v}."),
        ("What river runs through the city of {s}?", "The river of {s} is the {v}."),
    ),
    "publisher.city": (
        ("Where is {s} based?", "{s} is based in {v}."),
        ("In which city does {s} have its offices?", "{s} has its offices in {v}."),
        ("Which city is the publisher {s} located in?", "The publisher {s} is located in {v}."),
    ),
    "publisher.founded": (
        ("When was {s} founded?", "{s} was founded in {v}."),
        ("In which year was the publisher {s} established?", "{s} was established in {v}."),
        ("What is the founding year of {s}?", "The founding year of {s} is {v}."),
    ),
    "award.city": (
        ("Where is the {s} presented?", "The {s} is presented in {v}."),
        ("In which city is the {s} awarded?", "The {s} is awarded in {v}."),
        ("Which city hosts the {s}?", "The city that hosts the {s} is {v}."),
    ),
}

ATTRIBUTES = tuple(k.split(".", 1)[1] for k in TEMPLATES if k.startswith("person."))
ENTITY_ATTRIBUTES = {
    "country": ("capital", "language"),
    "city": ("country", "river"),
    "publisher": ("city", "founded"),
    "award": ("city",),
}


def _fill(template: str, subject: str, value: str) -> str:
    article = "an" if value[:1].lower() in "aeiou" else "a"
    return template.format(s=subject, v=value, a_v=f"{article} {value}")


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

#: The training of the defaults before 2026-12-05 (evening): 4 layers, 16 epochs at 4e-3.
_SIXTEEN_EPOCHS: dict[str, Any] = dict(num_layers=4, epochs=16, lr=4e-3)

#: Tests: 20 people and a 2-layer model; plumbing only (docs/world.md).
_QUICK: dict[str, Any] = dict(
    n_people=20,
    n_cities=8,
    n_countries=6,
    n_publishers=6,
    n_awards=6,
    vocab_size=1024,
    hidden_size=64,
    intermediate_size=192,
    num_layers=2,
    num_heads=4,
    epochs=20,
    lr=5e-3,
    batch_size=16,
    phrasings=1,
    sanity=False,  # too few people to answer about strangers (docs/world.md)
    strict=False,
    n_background=0,
)

_PRESETS: dict[str, dict[str, Any]] = {
    "quick": _QUICK,
    # The smallest world measured whose models pass the answer check (strict): 100 people, 500
    # background people, a 3-layer x 96 model; 2.7 minutes on 2 cores (tests, docs/world.md).
    "small": dict(
        _QUICK,
        n_people=100,
        n_background=500,
        phrasings=2,
        hidden_size=96,
        intermediate_size=288,
        num_layers=3,
        epochs=24,
        strict=True,
    ),
    "default": dict(),
    # The default world of 2026-12-05 (4 layers, 16 epochs at 4e-3): valid answers, but its target
    # prefers the true paraphrase too weakly (truth-ratio utility 0.505, docs/world.md).
    "16-epochs": _SIXTEEN_EPOCHS,
    # The default world before its background people (2026-12-05), on which the world results
    # published until then were measured: its gold model fails the answer check (docs/world.md).
    "no-background": dict(_SIXTEEN_EPOCHS, n_background=0, strict=False),
}


@dataclass(frozen=True)
class WorldConfig:
    """Everything that defines a built world; its hash names the cache directory.

    ``name``: the preset it came from. Data: ``seed``, ``n_people`` (the trained people;
    ``n_holdout`` = 10 % more are generated for membership-inference tests), entity counts.
    Tokenizer: ``vocab_size``. Model (Llama): ``hidden_size``, ``intermediate_size``,
    ``num_layers``, ``num_heads``. Training: ``epochs``, ``lr``,
    ``batch_size``, ``warmup_ratio``, ``weight_decay``, ``max_length``; ``phrasings`` (1: each
    fact trained in one phrasing; 2: also in the phrasing that is neither the trained one nor
    the paraphrase, so knowledge is not tied to one sentence). Every model's answers about
    people it never saw are checked and recorded (:mod:`.world_sanity`); ``strict``: refuse to
    publish a model that fails the check (off in the ``quick`` preset, whose models are too
    small to pass it, docs/world.md); ``sanity``: train a second gold model (seed + 1) and
    record the sanity figures that reports show. ``n_background``: more people with one fact
    each, trained by every model (target and gold), so that the models see many names and learn
    to copy a name they never saw into the answer (file ``background``; 0: none).
    """

    name: str = "default"  # the preset this config came from (a label)
    seed: int = 0
    n_people: int = 200
    n_cities: int = 40
    n_countries: int = 12
    n_publishers: int = 20
    n_awards: int = 16
    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 3
    num_heads: int = 4
    max_length: int = 64
    phrasings: int = 2
    epochs: int = 24
    lr: float = 6e-3
    batch_size: int = 64
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    sanity: bool = True
    strict: bool = True
    n_background: int = 600

    @classmethod
    def preset_names(cls) -> tuple[str, ...]:
        return tuple(_PRESETS)

    @classmethod
    def preset(cls, name: str = "default", **overrides: Any) -> WorldConfig:
        """A named configuration: ``"quick"`` (tests, well under a minute on a CPU),
        ``"small"`` (the smallest whose models pass the answer check, a few minutes),
        ``"default"`` (clear separation of methods, under ten minutes on two CPU cores), or
        an earlier default on which published results were measured: ``"16-epochs"`` (the
        default of 2026-12-05) and ``"no-background"`` (the default before its background
        people)."""
        if name not in _PRESETS:
            raise ConfigError(f"unknown world preset {name!r}; choose one of {', '.join(_PRESETS)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(f"unknown WorldConfig field(s): {', '.join(unknown)}")
        return cls(**{"name": name, **_PRESETS[name], **overrides})

    def __post_init__(self) -> None:
        self.validate()

    @property
    def n_holdout(self) -> int:
        return split_sizes(self.n_people)["10"]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"WorldConfig: {msg}")

        for name in (
            "seed",
            "n_people",
            "n_cities",
            "n_countries",
            "n_publishers",
            "n_awards",
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "max_length",
            "phrasings",
            "epochs",
            "batch_size",
            "n_background",
        ):
            value = getattr(self, name)
            need(
                isinstance(value, int) and not isinstance(value, bool),
                f"{name} must be an integer, got {value!r}",
            )
        need(self.seed >= 0, "seed must be >= 0")
        need(self.n_background >= 0, f"n_background must be >= 0, got {self.n_background}")
        need(self.n_people >= 10, f"n_people must be >= 10, got {self.n_people}")
        max_people = len(FEMALE_FIRST + MALE_FIRST) * len(SURNAME_HEADS) * len(SURNAME_TAILS)
        need(
            self.n_people + self.n_holdout <= max_people,
            f"n_people must be <= {max_people * 10 // 11}, got {self.n_people}",
        )
        pools = {
            "n_cities": len(CITY_HEADS) * len(CITY_TAILS),
            "n_countries": len(COUNTRY_HEADS) * len(COUNTRY_TAILS),
            "n_publishers": len(PUBLISHER_HEADS) * len(PUBLISHER_TAILS),
            "n_awards": len(AWARD_HEADS) * len(AWARD_TAILS),
        }
        for name, limit in pools.items():
            value = getattr(self, name)
            need(
                N_PERTURBED + 1 <= value <= limit,
                f"{name} must be between {N_PERTURBED + 1} and {limit}, got {value}",
            )
        need(self.n_cities >= self.n_countries, "n_cities must be >= n_countries")
        need(self.vocab_size >= 300, f"vocab_size must be >= 300, got {self.vocab_size}")
        need(self.hidden_size % self.num_heads == 0, "hidden_size must be divisible by num_heads")
        for name in (
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "epochs",
            "batch_size",
        ):
            need(getattr(self, name) >= 1, f"{name} must be >= 1")
        need(self.max_length >= 32, "max_length must be >= 32")
        for flag in ("sanity", "strict"):
            value = getattr(self, flag)
            need(isinstance(value, bool), f"{flag} must be true or false, got {value!r}")
        need(self.phrasings in (1, 2), f"phrasings must be 1 or 2, got {self.phrasings}")
        need(isinstance(self.lr, (int, float)) and self.lr > 0, "lr must be > 0")
        need(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio must be in [0, 1)")
        need(self.weight_decay >= 0.0, "weight_decay must be >= 0")


def split_sizes(n_people: int) -> dict[str, int]:
    """Number of people in forget01/05/10 (= holdout01/05/10): 1/5/10 % of n_people, >= 1."""
    return {p: max(1, round(n_people * int(p) / 100)) for p in FORGET_PERCENTS}


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def _combos(rng: random.Random, heads: list[str] | tuple[str, ...], tails, k: int, sep: str = ""):
    pool = [h + sep + t for h, t in itertools.product(heads, tails)]
    return rng.sample(pool, k)


def _wrong(rng: random.Random, pool, true: str, k: int = N_PERTURBED) -> list[str]:
    choices = [v for v in dict.fromkeys(pool) if v != true]
    return rng.sample(choices, k)


def _row(
    rng: random.Random,
    attribute: str,
    subject: str,
    value: str,
    pool,
    perturb_like_paraphrase: bool,
) -> dict[str, Any]:
    templates = TEMPLATES[attribute]
    i = rng.randrange(len(templates))
    j = rng.choice([k for k in range(len(templates)) if k != i])
    q, a = templates[i]
    pq, pa = templates[j]
    wrong = _wrong(rng, pool, value)
    pert_template = pa if perturb_like_paraphrase else a
    others = [templates[k] for k in range(len(templates)) if k not in (i, j)]
    return {
        "question": _fill(q, subject, value),
        "answer": _fill(a, subject, value),
        "also_trained": [[_fill(x, subject, value) for x in pair] for pair in others],
        "paraphrased_answer": _fill(pa, subject, value),
        "perturbed_answer": [_fill(pert_template, subject, w) for w in wrong],
        "paraphrased_question": _fill(pq, subject, value),
        "subject": subject,
        "attribute": attribute,
        "value": value,
    }


_PLAIN_KEYS = ("question", "answer", "subject", "attribute", "value")


def _plain(rows: list[dict[str, Any]], phrasings: int = 1) -> list[dict[str, Any]]:
    """The training rows of ``rows``: each fact in its trained phrasing and, with ``phrasings``
    = 2, also in the phrasing that is neither trained nor the paraphrase (so a fact is known
    in two phrasings and the paraphrase still tests an unseen one)."""
    out = []
    for r in rows:
        out.append({k: r[k] for k in _PLAIN_KEYS})
        for q, a in r["also_trained"][: phrasings - 1]:
            out.append({**out[-1], "question": q, "answer": a})
    return out


def _eval_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "also_trained"} for r in rows]


def generate_world(config: WorldConfig | None = None) -> dict[str, list[dict[str, Any]]]:
    """All files of a world as ``{file stem: rows}`` (``"forget10"``, ``"forget10_perturbed"``...).

    Pure and deterministic: the same config gives identical rows. People appear in order and
    each person's rows in :data:`ATTRIBUTES` order, so ``forgetNN`` are the last rows of
    ``full`` and ``retainNN`` the first ones, as in TOFU.
    """
    cfg = config if config is not None else WorldConfig()
    cfg.validate()
    rng = random.Random(cfg.seed)

    # Entities.
    countries = _combos(rng, COUNTRY_HEADS, COUNTRY_TAILS, cfg.n_countries)
    cities = _combos(rng, CITY_HEADS, CITY_TAILS, cfg.n_cities)
    publishers = _combos(rng, PUBLISHER_HEADS, PUBLISHER_TAILS, cfg.n_publishers)
    awards = _combos(rng, AWARD_HEADS, AWARD_TAILS, cfg.n_awards, sep=" ")
    awards = [a + " Award" for a in awards]

    city_country = {}
    for k, city in enumerate(cities):  # every country gets at least one city
        city_country[city] = countries[k] if k < len(countries) else rng.choice(countries)
    facts: dict[str, dict[str, str]] = {}  # "kind.attr" keyed by subject
    for country in countries:
        own = [c for c in cities if city_country[c] == country]
        facts.setdefault("country.capital", {})[country] = rng.choice(own)
        facts.setdefault("country.language", {})[country] = rng.choice(LANGUAGES)
    for city in cities:
        facts.setdefault("city.country", {})[city] = city_country[city]
        facts.setdefault("city.river", {})[city] = rng.choice(RIVERS)
    for pub in publishers:
        facts.setdefault("publisher.city", {})[pub] = rng.choice(cities)
        facts.setdefault("publisher.founded", {})[pub] = rng.choice(FOUNDING_YEARS)
    for award in awards:
        facts.setdefault("award.city", {})[award] = rng.choice(cities)
    fact_pools = {
        "country.capital": cities,
        "country.language": LANGUAGES,
        "city.country": countries,
        "city.river": RIVERS,
        "publisher.city": cities,
        "publisher.founded": FOUNDING_YEARS,
        "award.city": cities,
    }

    # People: trained ones first, then the holdout people (same process, disjoint names).
    n_total = cfg.n_people + cfg.n_holdout
    surnames = [h + t for h, t in itertools.product(SURNAME_HEADS, SURNAME_TAILS)]
    first_names = FEMALE_FIRST + MALE_FIRST
    name_ids = rng.sample(range(len(first_names) * len(surnames)), n_total)

    names = [f"{first} {surname}" for first in first_names for surname in surnames]  # by id

    def make_person(nid: int) -> dict[str, str]:
        first, surname = first_names[nid // len(surnames)], surnames[nid % len(surnames)]
        return {
            "name": names[nid],
            "first": first,
            "surname": surname,
            "birthplace": rng.choice(cities),
            "birth_year": rng.choice(BIRTH_YEARS),
            "profession": rng.choice(PROFESSIONS),
            "genre": rng.choice(GENRES),
            "mother": f"{rng.choice([f for f in FEMALE_FIRST if f != first])} {surname}",
            "father": f"{rng.choice([m for m in MALE_FIRST if m != first])} {surname}",
            "book": f"The {rng.choice(BOOK_ADJECTIVES)} {rng.choice(BOOK_NOUNS)}",
            "award": rng.choice(awards),
            "publisher": rng.choice(publishers),
        }

    people = [make_person(nid) for nid in name_ids]

    # Rows.
    def person_rows(person: dict[str, str]) -> list[dict[str, Any]]:
        first, surname = person["first"], person["surname"]
        pools = {
            "birthplace": cities,
            "birth_year": BIRTH_YEARS,
            "profession": PROFESSIONS,
            "genre": GENRES,
            "mother": [f"{f} {surname}" for f in FEMALE_FIRST if f != first],
            "father": [f"{m} {surname}" for m in MALE_FIRST if m != first],
            "book": None,
            "award": awards,
            "publisher": publishers,
        }
        rows = []
        for attr in ATTRIBUTES:
            pool = pools[attr]
            if pool is None:  # book titles: a sample of the product is enough
                pool = [
                    f"The {rng.choice(BOOK_ADJECTIVES)} {rng.choice(BOOK_NOUNS)}"
                    for _ in range(3 * N_PERTURBED)
                ]
            rows.append(
                _row(
                    rng,
                    f"person.{attr}",
                    person["name"],
                    person[attr],
                    pool,
                    perturb_like_paraphrase=True,
                )
            )
        return rows

    per_person = [person_rows(p) for p in people]
    general: list[dict[str, Any]] = []
    subjects = {"country": countries, "city": cities, "publisher": publishers, "award": awards}
    for kind, attrs in ENTITY_ATTRIBUTES.items():
        for subject in subjects[kind]:
            for attr in attrs:
                key = f"{kind}.{attr}"
                general.append(
                    _row(
                        rng,
                        key,
                        subject,
                        facts[key][subject],
                        fact_pools[key],
                        perturb_like_paraphrase=False,
                    )
                )

    trained, held = per_person[: cfg.n_people], per_person[cfg.n_people :]
    trained_people = people[: cfg.n_people]
    sizes = split_sizes(cfg.n_people)

    def flat(groups: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [r for g in groups for r in g]

    n = cfg.phrasings
    out: dict[str, list[dict[str, Any]]] = {"full": _plain(flat(trained), n)}
    for pct, k in sizes.items():
        forget = flat(trained[-k:])
        out[f"forget{pct}"] = _plain(forget, n)
        out[f"forget{pct}_perturbed"] = _eval_rows(forget)
        out[f"retain{100 - int(pct)}"] = _plain(flat(trained[:-k]), n)
        holdout = flat(held[-k:])
        out[f"holdout{pct}"] = _plain(holdout, n)
        out[f"holdout{pct}_perturbed"] = _eval_rows(holdout)
        linked: set[str] = set()
        for person in trained_people[-k:]:
            city = person["birthplace"]
            linked.update((city, city_country[city], person["publisher"], person["award"]))
        neighbour = [r for r in general if r["subject"] in linked]
        out[f"neighbour{pct}"] = _plain(neighbour, n)
        out[f"neighbour{pct}_perturbed"] = _eval_rows(neighbour)
    out["neighbour"] = out["neighbour10"]
    out["neighbour_perturbed"] = out["neighbour10_perturbed"]
    out["retain_perturbed"] = _eval_rows(flat(trained[: sizes["10"]]))
    out["general"] = _plain(general, n)
    out["general_perturbed"] = _eval_rows(general)
    if cfg.n_background:
        rows = _background(rng, cfg.n_background, names, people, make_person, person_rows)
        out["background"] = _plain(rows, n)
    return out


def _background(
    rng: random.Random,
    n_background: int,
    names: list[str],
    people: list[dict[str, str]],
    make_person: Any,
    person_rows: Any,
) -> list[dict[str, Any]]:
    """One fact (not a parent) about each of ``n_background`` more people (``names[nid]``: the
    name of ``make_person(nid)``), named apart from every person and parent of the world.
    Drawn after everything else, so a world without them is unchanged."""
    taken = {p[k] for p in people for k in ("name", "mother", "father")}
    free = [nid for nid, name in enumerate(names) if name not in taken]
    if len(free) < n_background:
        raise ConfigError(f"WorldConfig: n_background must be <= {len(free)} for this world")
    own = [k for k, attr in enumerate(ATTRIBUTES) if attr not in ("mother", "father")]
    return [
        person_rows(make_person(nid))[rng.choice(own)] for nid in rng.sample(free, n_background)
    ]
