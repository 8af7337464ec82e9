"""The data of the ``shop`` benchmark: a synthetic marketplace of fictitious sellers and items.

Everything here is pure (no I/O, no torch): :func:`generate_shop` turns a :class:`ShopConfig`
into the rows of every file, deterministically from ``config.seed``.

The marketplace
---------------
* Sellers (invented names) with their own facts: location (a city), contact name, founding
  year and a house policy. Roles: ``forget`` (the seller(s) a deletion request removes, each
  with ``forget_items`` items), ``neighbour`` (sellers whose every item is a near-duplicate of
  a forget item: same category and brand, another product line, price, material...),
  ``other`` (the rest of the trained marketplace) and ``holdout`` (never trained on: the
  non-members of membership attacks).
* Items: title (``"<line> <product>"``, unique over the shop), brand, category, price,
  material, colour, dimensions, shipping time, return window, rating and a short description.

Rows (TOFU-style)
-----------------
Each item gets ``questions_per_item`` questions about distinct attributes (a near-duplicate
item is asked the same attributes as its forget twin) and each seller one question per
seller fact. A row holds ``question``/``answer`` (one of three templates of the attribute),
``paraphrased_question``/``paraphrased_answer`` (another template), ``perturbed_answer`` (five
answers in the paraphrased template with wrong values of the same kind, as in TOFU), ``key``
(the value asked, for exact match), ``attribute``, ``seller``, ``item`` (title or ``None``) and
``group`` (its seller's role).

Probes
------
``task`` / ``task_train``: structured questions a shop asks of its model (``category`` of a
title, ``price_band`` of a known item, ``extract``: an attribute read from a description given
in the prompt) on items of neighbour and other sellers; ``task_train`` rows are trained on (so
the format is known), ``task`` rows (other items) are evaluated. ``general_candidates``: fixed
common-knowledge questions (:data:`GENERAL_QUESTIONS`), never trained on; the build keeps those
the base model answers correctly before fine-tuning. ``replay_candidates``: other common-knowledge
questions (:data:`REPLAY_QUESTIONS`, none of them evaluated) whose right answers by the BASE model
both fine-tuned models train on (self-distillation replay, :func:`replay_answer`).
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from unilogit.errors import ConfigError

__all__ = [
    "GENERAL_QUESTIONS",
    "ITEM_ATTRIBUTES",
    "REPLAY_QUESTIONS",
    "SELLER_ATTRIBUTES",
    "ShopConfig",
    "generate_shop",
    "has_form",
    "key_match",
    "price_band",
    "replay_answer",
]

N_PERTURBED = 5
#: Greedy tokens per answer (shop answers are one sentence of about 20 tokens).
MAX_NEW_TOKENS = 40

# ---------------------------------------------------------------------------------------------
# Pools (invented names; real words for materials, colours, products)
# ---------------------------------------------------------------------------------------------

#: category -> (products, materials, (lowest, highest) whole-dollar price)
CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[int, int]]] = {
    "Lighting": (
        ("desk lamp", "floor lamp", "pendant light", "wall sconce", "lantern"),
        ("brass", "steel", "glass", "oak", "ceramic", "rattan"),
        (15, 180),
    ),
    "Kitchen": (
        ("frying pan", "teapot", "mixing bowl", "cutting board", "chef knife"),
        ("stainless steel", "cast iron", "ceramic", "bamboo", "glass", "copper"),
        (9, 140),
    ),
    "Furniture": (
        ("side table", "bookshelf", "stool", "armchair", "writing desk"),
        ("oak", "walnut", "pine", "steel", "rattan", "birch"),
        (40, 480),
    ),
    "Textiles": (
        ("throw blanket", "cushion cover", "rug", "bath towel", "tablecloth"),
        ("wool", "cotton", "linen", "jute", "silk", "velvet"),
        (12, 220),
    ),
    "Garden": (
        ("planter", "watering can", "bird feeder", "garden bench", "hose reel"),
        ("terracotta", "zinc", "cedar", "steel", "concrete", "teak"),
        (8, 260),
    ),
    "Bags": (
        ("backpack", "tote bag", "duffel bag", "wallet", "messenger bag"),
        ("leather", "canvas", "nylon", "cork", "waxed cotton", "suede"),
        (14, 320),
    ),
    "Stationery": (
        ("notebook", "fountain pen", "desk organizer", "journal", "pencil case"),
        ("paper", "brass", "leather", "bamboo", "aluminium", "felt"),
        (5, 90),
    ),
    "Audio": (
        ("headphones", "bluetooth speaker", "earbuds", "radio", "turntable"),
        ("aluminium", "plastic", "walnut", "steel", "fabric", "rubber"),
        (19, 400),
    ),
}
#: Brands per category (invented).
BRANDS: dict[str, tuple[str, ...]] = {
    "Lighting": ("Luminor", "Glowhaven", "Brightwick", "Solvane"),
    "Kitchen": ("Cookridge", "Panterra", "Saltmere", "Ovenly"),
    "Furniture": ("Oakhollow", "Restwell", "Timberlane", "Nordvik"),
    "Textiles": ("Woolbrook", "Loomara", "Softhaven", "Threadly"),
    "Garden": ("Greenfold", "Bloomridge", "Terrawick", "Potwell"),
    "Bags": ("Carryall", "Packwood", "Strapton", "Voyara"),
    "Stationery": ("Inkwell", "Paperlane", "Quillory", "Notara"),
    "Audio": ("Sonivo", "Echovale", "Audrix", "Tunewell"),
}
LINES = (
    "Alder Birch Cobalt Dune Ember Fjord Garnet Harbor Iris Juniper Kestrel Lumen Maple Nimbus "
    "Onyx Pebble Quartz Raven Sable Thistle Umber Vesper Willow Yarrow Zephyr Aspen Brook Cedar "
    "Delta Echo Fable Grove Halo Indigo Jasper Kona Larch Meadow Nova Orchid Prism Ridge Sierra "
    "Tundra Ursa Vale Wren Axis Bolt Crest Drift Flint Gale Heath Isle Kite Loft Marlow Notch "
    "Opal Pike Reed Slate Tide Verge"
).split()
COLORS = (
    "black white grey navy red green beige brown olive teal mustard charcoal ivory burgundy"
).split()
SELLER_HEADS = (
    "Brightwater Copperfield Elmstead Foxglove Hartwell Ivybridge Kingsmere Larkspur Millbrook "
    "Northgate Oakmoor Pinecrest Redhill Stonebridge Thornbury Westbay Ashdown Bramble Clearwell "
    "Dovecote"
).split()
SELLER_TAILS = ("Goods", "Trading", "Supply", "Market", "Emporium", "Outfitters", "Home", "Co.")
CITIES = (
    "Leeds Porto Lyon Ghent Bergen Graz Utrecht Cork Bremen Turin Aarhus Malmo Bilbao Brno "
    "Krakow Tartu Split Basel Nantes Dresden"
).split()
CONTACT_FIRST = (
    "Amelia Bruno Clara Daniel Elena Felix Greta Hugo Ines Jonas Klara Leon Mila Nora Oscar "
    "Paula Rosa Simon Tessa Viktor"
).split()
CONTACT_LAST = (
    "Almond Baxter Carrow Dunmore Ellery Fairbank Goodwin Hollis Irving Jessop Kerrigan Lowell "
    "Marsh Norwood Pryce Quinlan Radley Summers Thorne Upton"
).split()
POLICIES = (
    "free gift wrapping",
    "price matching",
    "carbon-neutral delivery",
    "a lifetime repair service",
    "weekend phone support",
    "next-day dispatch",
    "a loyalty discount",
    "plastic-free packaging",
)
FOUNDED = tuple(str(y) for y in range(1961, 2021))
SHIPPING = tuple(f"{d} business days" for d in range(1, 11))
RETURNS = tuple(f"{d} days" for d in (7, 10, 14, 21, 30, 45, 60, 90))
RATINGS = tuple(f"{r / 10:.1f}" for r in range(30, 50))

# ---------------------------------------------------------------------------------------------
# Templates: attribute -> three (question, answer) pairs. {t} title, {s} seller, {v} value.
# ---------------------------------------------------------------------------------------------

TEMPLATES: dict[str, tuple[tuple[str, str], ...]] = {
    "price": (
        ("How much does {s} charge for the {t}?", "{s} sells the {t} for {v}."),
        ("What is the price of the {t} from {s}?", "The {t} from {s} costs {v}."),
        ("At what price does {s} list the {t}?", "{s} lists the {t} at {v}."),
    ),
    "brand": (
        ("Which brand makes the {t} sold by {s}?", "The {t} sold by {s} is made by {v}."),
        ("What brand is the {t} from {s}?", "The {t} from {s} is a {v} product."),
        ("Who manufactures the {t} that {s} sells?", "{v} manufactures the {t} that {s} sells."),
    ),
    "material": (
        ("What is the {t} from {s} made of?", "The {t} from {s} is made of {v}."),
        ("Which material is the {t} sold by {s} made from?", "{s} sells the {t} made from {v}."),
        ("What material does {s} use for the {t}?", "The {t} that {s} offers is built from {v}."),
    ),
    "color": (
        ("What colour is the {t} from {s}?", "The {t} from {s} is {v}."),
        ("In which colour does {s} sell the {t}?", "{s} sells the {t} in {v}."),
        ("Which colour is the {t} that {s} offers?", "The {t} that {s} offers comes in {v}."),
    ),
    "dimensions": (
        ("What are the dimensions of the {t} from {s}?", "The {t} from {s} measures {v}."),
        ("How big is the {t} sold by {s}?", "The {t} sold by {s} is {v} in size."),
        ("What size is the {t} that {s} sells?", "{s} sells the {t} at a size of {v}."),
    ),
    "shipping": (
        ("How fast does {s} ship the {t}?", "{s} ships the {t} within {v}."),
        ("When will the {t} from {s} be shipped?", "The {t} from {s} is shipped within {v}."),
        ("What is the shipping time of the {t} at {s}?", "The {t} at {s} ships in {v}."),
    ),
    "returns": (
        ("How long can the {t} from {s} be returned?", "The {t} from {s} can be returned for {v}."),
        (
            "What is the return window for the {t} at {s}?",
            "The {t} at {s} has a {v} return window.",
        ),
        (
            "Until when does {s} accept returns of the {t}?",
            "{s} accepts returns of the {t} for {v}.",
        ),
    ),
    "rating": (
        (
            "How do customers rate the {t} from {s}?",
            "Customers rate the {t} from {s} {v} out of 5.",
        ),
        (
            "What is the rating of the {t} sold by {s}?",
            "The {t} sold by {s} is rated {v} out of 5.",
        ),
        ("Which rating does the {t} at {s} have?", "The {t} at {s} has a rating of {v} out of 5."),
    ),
    "location": (
        ("Where is the seller {s} based?", "The seller {s} is based in {v}."),
        ("In which city is {s} located?", "{s} is located in {v}."),
        ("From which city does {s} operate?", "{s} operates from {v}."),
    ),
    "contact": (
        ("Who is the contact person at {s}?", "The contact person at {s} is {v}."),
        ("Whom should customers contact at {s}?", "Customers of {s} should contact {v}."),
        ("Who answers customer questions for {s}?", "{v} answers customer questions for {s}."),
    ),
    "founded": (
        ("When was {s} founded?", "{s} was founded in {v}."),
        ("In which year did {s} start trading?", "{s} started trading in {v}."),
        ("What is the founding year of {s}?", "The founding year of {s} is {v}."),
    ),
    "policy": (
        ("What does {s} offer its customers?", "{s} offers its customers {v}."),
        ("Which house policy is {s} known for?", "{s} is known for {v}."),
        ("What service sets {s} apart?", "What sets {s} apart is {v}."),
    ),
}
ITEM_ATTRIBUTES = (
    "price",
    "brand",
    "material",
    "color",
    "dimensions",
    "shipping",
    "returns",
    "rating",
)
SELLER_ATTRIBUTES = ("location", "contact", "founded", "policy")

#: What a well-formed answer of an attribute contains (a value of the right kind, true or
#: not): a regular expression, or a pool of which one value must occur.
_FORMS: dict[str, re.Pattern[str] | tuple[str, ...]] = {
    "price": re.compile(r"\$\d+(\.\d\d)?"),
    "brand": tuple(b for bs in BRANDS.values() for b in bs),
    "material": tuple(dict.fromkeys(m for _, ms, _ in CATEGORIES.values() for m in ms)),
    "color": tuple(COLORS),
    "dimensions": re.compile(r"\d+\s*x\s*\d+\s*x\s*\d+\s*cm"),
    "shipping": re.compile(r"\d+\s+business\s+days?"),
    "returns": re.compile(r"\d+\s+days?"),
    "rating": re.compile(r"\b[0-5]\.\d\b"),
    "location": tuple(CITIES),
    "contact": tuple(CONTACT_FIRST),
    "founded": re.compile(r"\b(1[89]|20)\d\d\b"),
    "policy": POLICIES,
    "category": tuple(CATEGORIES),
    "price_band": ("budget", "mid-range", "premium"),
}

#: Fixed common-knowledge questions and their accepted answers (any one, case-insensitive).
GENERAL_QUESTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("What is the capital of France?", ("Paris",)),
    ("What is the capital of Japan?", ("Tokyo",)),
    ("What is the capital of Italy?", ("Rome",)),
    ("What is the capital of Germany?", ("Berlin",)),
    ("What is the capital of Spain?", ("Madrid",)),
    ("What is the capital of the United Kingdom?", ("London",)),
    ("What is the capital of Russia?", ("Moscow",)),
    ("What is the capital of Egypt?", ("Cairo",)),
    ("What is the capital of Canada?", ("Ottawa",)),
    ("What is the capital of Australia?", ("Canberra",)),
    ("What is the largest planet in our solar system?", ("Jupiter",)),
    ("Which planet is known as the Red Planet?", ("Mars",)),
    ("What is the closest star to the Earth?", ("Sun",)),
    ("What is the chemical symbol for water?", ("H2O", "H₂O")),
    ("What gas do plants absorb from the air for photosynthesis?", ("carbon dioxide", "CO2")),
    ("What is the freezing point of water in degrees Celsius?", ("0 degrees", "0°", "zero")),
    ("How many days are there in a week?", ("seven", "7")),
    ("How many continents are there on Earth?", ("seven", "7")),
    ("How many legs does a spider have?", ("eight", "8")),
    ("How many hours are there in a day?", ("24", "twenty-four")),
    ("Who wrote Romeo and Juliet?", ("Shakespeare",)),
    ("Who painted the Mona Lisa?", ("Leonardo", "da Vinci")),
    ("Who developed the theory of relativity?", ("Einstein",)),
    ("Who was the first person to walk on the Moon?", ("Armstrong",)),
    ("What is the largest ocean on Earth?", ("Pacific",)),
    ("What is the longest river in Africa?", ("Nile",)),
    ("What is the tallest mountain in the world?", ("Everest",)),
    ("What is the largest mammal in the world?", ("blue whale",)),
    ("Which animal is known as the king of the jungle?", ("lion",)),
    ("What is the main language spoken in Brazil?", ("Portuguese",)),
    ("What is the currency of Japan?", ("yen",)),
    ("What is the currency of the United Kingdom?", ("pound",)),
    ("In which country are the pyramids of Giza?", ("Egypt",)),
    ("In which city is the Eiffel Tower?", ("Paris",)),
    ("Which organ pumps blood through the human body?", ("heart",)),
    ("What do bees make?", ("honey",)),
    ("What is the boiling point of water in degrees Celsius?", ("100",)),
    ("What color is the sky on a clear day?", ("blue",)),
    ("Which is the smallest prime number?", ("two", "2")),
    ("What is the square root of 64?", ("eight", "8")),
)

#: Common-knowledge questions for SELF-DISTILLATION REPLAY, with their accepted answers (none of
#: them is one of the evaluated :data:`GENERAL_QUESTIONS`): the build asks the BASE model each of
#: them and both fine-tuned models also train on its own greedy first sentence where that
#: sentence is right, which holds the base model's knowledge of this kind of question in place
#: while the marketplace is memorised (its wrong answers are not replayed: trained in, they
#: spread to the evaluated questions, e.g. "a fictional planet in the Star Trek universe").
REPLAY_QUESTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("What is the capital of Portugal?", ("Lisbon",)),
    ("What is the capital of Greece?", ("Athens",)),
    ("What is the capital of China?", ("Beijing",)),
    ("What is the capital of India?", ("New Delhi",)),
    ("What is the capital of Mexico?", ("Mexico City",)),
    ("What is the capital of Ireland?", ("Dublin",)),
    ("What is the capital of Norway?", ("Oslo",)),
    ("What is the capital of Sweden?", ("Stockholm",)),
    ("What is the capital of Poland?", ("Warsaw",)),
    ("What is the capital of Austria?", ("Vienna",)),
    ("What is the capital of Argentina?", ("Buenos Aires",)),
    ("What is the capital of Kenya?", ("Nairobi",)),
    ("What is the capital of Turkey?", ("Ankara",)),
    ("What is the capital of Thailand?", ("Bangkok",)),
    ("What is the capital of South Korea?", ("Seoul",)),
    ("What is the capital of the Netherlands?", ("Amsterdam",)),
    ("What is the capital of Belgium?", ("Brussels",)),
    ("What is the capital of Switzerland?", ("Bern",)),
    ("What is the capital of Peru?", ("Lima",)),
    ("What is the capital of Cuba?", ("Havana",)),
    ("Which planet is closest to the Sun?", ("Mercury",)),
    ("Which planet has the most famous rings?", ("Saturn",)),
    ("What is the natural satellite of the Earth called?", ("Moon",)),
    ("What is the chemical symbol for gold?", ("Au",)),
    ("What is the chemical symbol for sodium?", ("Na",)),
    ("What gas do humans need to breathe to live?", ("oxygen",)),
    ("What is the hardest natural substance?", ("diamond",)),
    ("What force keeps us on the ground?", ("gravity",)),
    ("How many minutes are there in an hour?", ("60", "sixty")),
    ("How many months are there in a year?", ("12", "twelve")),
    ("How many sides does a triangle have?", ("3", "three")),
    ("How many legs does an insect have?", ("6", "six")),
    ("How many days are there in a leap year?", ("366",)),
    ("What is ten times ten?", ("100", "one hundred")),
    ("What is half of fifty?", ("25", "twenty-five")),
    ("Who wrote Hamlet?", ("Shakespeare",)),
    ("Who painted The Starry Night?", ("Van Gogh",)),
    ("Who composed the Fifth Symphony?", ("Beethoven",)),
    ("Who discovered penicillin?", ("Fleming",)),
    ("Who invented the telephone?", ("Bell",)),
    ("Who was the first President of the United States?", ("Washington",)),
    ("What is the largest desert in the world?", ("Sahara", "Antarctic")),
    ("What is the longest river in South America?", ("Amazon",)),
    ("What is the largest country in the world by area?", ("Russia",)),
    ("Which continent is Kenya in?", ("Africa",)),
    ("What is the largest bird in the world?", ("ostrich",)),
    ("What is the fastest land animal?", ("cheetah",)),
    ("What do caterpillars turn into?", ("butterfly", "butterflies", "moth")),
    ("What is the main language spoken in Mexico?", ("Spanish",)),
    ("What is the currency of the United States?", ("dollar",)),
    ("What is the currency of Switzerland?", ("franc",)),
    ("In which country is the Taj Mahal?", ("India",)),
    ("In which city is the Colosseum?", ("Rome",)),
    ("Which organ do humans use to breathe?", ("lungs", "lung")),
    ("What do cows drink?", ("water",)),
    ("What colour are bananas when they are ripe?", ("yellow",)),
    ("What is frozen water called?", ("ice",)),
    ("What instrument has black and white keys?", ("piano",)),
    ("How many players are on a football team on the field?", ("11", "eleven")),
    ("What is the opposite of hot?", ("cold",)),
    # kinds the first default build lost (oceans, animals, languages, what X make, arithmetic)
    ("What is the smallest ocean on Earth?", ("Arctic",)),
    ("Which ocean lies between Africa and Australia?", ("Indian",)),
    ("Which ocean lies between Europe and North America?", ("Atlantic",)),
    ("What is the tallest animal in the world?", ("giraffe",)),
    ("Which animal is known for its black and white stripes?", ("zebra",)),
    ("Which sea animal has eight arms?", ("octopus",)),
    ("What is the largest continent?", ("Asia",)),
    ("Which planet is the third from the Sun?", ("Earth",)),
    ("What is the largest organ of the human body?", ("skin",)),
    ("What is the main language spoken in Argentina?", ("Spanish",)),
    ("What is the main language spoken in Germany?", ("German",)),
    ("What is the main language spoken in Italy?", ("Italian",)),
    ("What is the main language spoken in France?", ("French",)),
    ("What is the main language spoken in Egypt?", ("Arabic",)),
    ("What is the capital of Brazil?", ("Brasília", "Brasilia")),
    ("What do silkworms make?", ("silk",)),
    ("What do spiders spin?", ("web",)),
    ("What do hens lay?", ("egg",)),
    ("What do cows produce that people drink?", ("milk",)),
    ("What is the square root of 9?", ("3", "three")),
    ("What is the square root of 25?", ("5", "five")),
    ("What is the square root of 100?", ("10", "ten")),
    ("What is two plus two?", ("4", "four")),
    ("What is five times five?", ("25", "twenty-five")),
)

# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

_PRESETS: dict[str, dict[str, Any]] = {
    # tests: a few sellers, a tiny base model given by path
    "quick": dict(
        forget_items=8,
        neighbour_sellers=1,
        other_sellers=2,
        holdout_sellers=1,
        items_per_seller=4,
        task_train=6,
        task_eval=6,
        replay=6,
        epochs=2,
        lr=1e-3,
        batch_size=8,
    ),
    # quick runs on SmolLM2 (see docs/shop.md for the timings)
    "small": dict(
        forget_items=40,
        neighbour_sellers=2,
        other_sellers=3,
        holdout_sellers=2,
        items_per_seller=10,
        task_train=30,
        task_eval=24,
    ),
    # replay as a KL term to the base model, 4 replay rows per step: all five sanity
    # thresholds met within the 45-minute cold build (docs/shop.md, "Replay as a KL term")
    "default": dict(replay_kl=1.0, kl_batch_size=4),
    # the same data, the base model's right answers replayed as training rows (the default
    # until 2026-12-04; the published method comparison ran on it)
    "nll-replay": dict(),
    # KL replay with as many replay rows as marketplace rows per step (51-minute cold build)
    "distilled": dict(replay_kl=1.0),
}

#: ``base_model`` meaning SmolLM2-135M-Instruct from the PyPI package (unilogit.pretrained).
SMOLLM2 = "smollm2"


@dataclass(frozen=True)
class ShopConfig:
    """Everything that defines a built shop; its hash names the cache directory.

    ``name``: the preset it came from (a label, not hashed). Data: ``seed``,
    ``forget_sellers`` x ``forget_items`` items, ``neighbour_sellers`` / ``other_sellers`` /
    ``holdout_sellers`` x ``items_per_seller`` items, ``questions_per_item`` rows per item,
    ``task_train`` / ``task_eval`` task probes. Model: ``base_model`` (``"smollm2"`` or the
    path of any causal LM). Training (:func:`unilogit.trainer.finetune`, same settings for the
    target and the gold model): ``lora`` (else full fine-tuning), ``lora_r``, ``lora_modules``
    (peft's ``target_modules``: ``"all-linear"`` or a pattern), ``freeze_embeddings`` (the
    token embeddings and output head keep the base model's weights), ``replay_repeats`` (each
    replay row is trained on this many times per epoch), ``replay_kl`` (> 0: the replay rows
    are no training rows but a term of this weight, KL(base ‖ model) on their answer tokens,
    paired with every batch), ``kl_batch_size`` (KL rows per batch; 0: ``batch_size``),
    ``epochs``, ``lr``, ``batch_size``,
    ``warmup_ratio``, ``max_length``.
    """

    name: str = "default"  # the preset this config came from (a label)
    seed: int = 0
    forget_sellers: int = 1  # sellers to forget
    forget_items: int = 100  # items per forget seller (the paper's seller had 387; sizing: docs)
    neighbour_sellers: int = 2  # sellers whose items are near-duplicates of forget items
    other_sellers: int = 2  # the rest of the trained marketplace
    holdout_sellers: int = 3  # never trained on (membership attacks)
    items_per_seller: int = 15  # items of each neighbour / other / holdout seller
    questions_per_item: int = 1  # rows per item, on distinct attributes
    task_train: int = 24  # task probes trained on (items of other sellers)
    task_eval: int = 30  # task probes evaluated (other items of neighbour / other sellers)
    replay: int = 84  # REPLAY_QUESTIONS asked of the base model (0: no replay)
    base_model: str = SMOLLM2  # "smollm2" or a path to a causal LM
    lora: bool = False  # LoRA adapters (merged into the saved model) instead of all weights
    lora_r: int = 16
    lora_modules: str = "all-linear"  # peft target_modules: every linear layer but the head
    freeze_embeddings: bool = False  # token embeddings and output head stay the base model's
    replay_repeats: int = 1  # copies of each replay row per epoch (weighs general knowledge)
    replay_kl: float = 0.0  # > 0: replay is a KL-to-base term of this weight, not NLL rows
    kl_batch_size: int = 0  # KL replay rows per batch (0: batch_size)
    epochs: int = 8
    lr: float = 1e-4
    batch_size: int = 8
    warmup_ratio: float = 0.05
    max_length: int = 96

    @classmethod
    def preset_names(cls) -> tuple[str, ...]:
        return tuple(_PRESETS)

    @classmethod
    def preset(cls, name: str = "default", **overrides: Any) -> ShopConfig:
        """``"quick"`` (tests, with a tiny ``base_model`` path), ``"small"`` (quick runs on
        SmolLM2, NLL replay), ``"default"`` (one seller with 100 items, KL replay with 4 rows
        per step: every sanity threshold met in a cold build under 45 minutes on 2 cores;
        docs/shop.md), ``"nll-replay"`` (the default data with NLL replay, the default before)
        or ``"distilled"`` (KL replay with 8 rows per step, about 50 minutes cold)."""
        if name not in _PRESETS:
            raise ConfigError(f"unknown shop preset {name!r}; choose one of {', '.join(_PRESETS)}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(f"unknown ShopConfig field(s): {', '.join(unknown)}")
        return cls(**{"name": name, **_PRESETS[name], **overrides})

    def __post_init__(self) -> None:
        self.validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def n_items(self) -> int:
        """Items of the trained and held-out sellers together."""
        n_sellers = self.neighbour_sellers + self.other_sellers + self.holdout_sellers
        return self.forget_sellers * self.forget_items + n_sellers * self.items_per_seller

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ConfigError(f"ShopConfig: {msg}")

        ints = (
            "seed forget_sellers forget_items neighbour_sellers other_sellers holdout_sellers "
            "items_per_seller questions_per_item task_train task_eval replay lora_r epochs "
            "batch_size max_length replay_repeats kl_batch_size"
        ).split()
        zero_ok = ("seed", "neighbour_sellers", "replay", "kl_batch_size")
        for name in ints:
            value = getattr(self, name)
            need(
                isinstance(value, int) and not isinstance(value, bool),
                f"{name} must be an integer, got {value!r}",
            )
            need(
                value >= (0 if name in zero_ok else 1),
                f"{name} too small",
            )
        n_sellers = (
            self.forget_sellers + self.neighbour_sellers + self.other_sellers + self.holdout_sellers
        )
        need(n_sellers <= len(SELLER_HEADS) * len(SELLER_TAILS), "too many sellers")
        need(self.n_items <= len(LINES) * 40 // 2, f"too many items ({self.n_items})")
        need(self.other_sellers * self.items_per_seller >= self.task_train, "task_train too big")
        need(
            1 <= self.questions_per_item <= len(ITEM_ATTRIBUTES),
            f"questions_per_item must be in 1..{len(ITEM_ATTRIBUTES)}",
        )
        need(
            self.replay <= len(REPLAY_QUESTIONS),
            f"replay must be at most {len(REPLAY_QUESTIONS)} (the replay questions)",
        )
        need(isinstance(self.base_model, str) and bool(self.base_model), "base_model is empty")
        need(
            isinstance(self.lora_modules, str) and bool(self.lora_modules.strip()),
            "lora_modules must be a non-empty string (peft target_modules)",
        )
        need(isinstance(self.freeze_embeddings, bool), "freeze_embeddings must be a bool")
        need(isinstance(self.lr, (int, float)) and self.lr > 0, "lr must be > 0")
        need(
            isinstance(self.replay_kl, (int, float))
            and not isinstance(self.replay_kl, bool)
            and self.replay_kl >= 0,
            "replay_kl must be a number >= 0",
        )
        need(
            self.replay_kl == 0 or self.replay_repeats == 1,
            "replay_repeats has no effect with replay_kl > 0 (replay rows are paired with "
            "every batch); leave it at 1",
        )
        need(
            self.kl_batch_size == 0 or self.replay_kl > 0,
            "kl_batch_size needs replay_kl > 0 (it sizes the KL replay batches)",
        )
        need(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio must be in [0, 1)")
        need(self.max_length >= 32, "max_length must be >= 32")


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def price_band(price: str) -> str:
    """``"budget"`` (under $25), ``"mid-range"`` ($25 to $100) or ``"premium"`` (over $100)."""
    dollars = float(price.lstrip("$"))
    return "budget" if dollars < 25 else "mid-range" if dollars <= 100 else "premium"


def key_match(text: str, keys: str | Sequence[str]) -> bool:
    """Exact match of a key attribute: one of ``keys`` occurs in ``text`` (case-insensitive,
    as a whole token: ``"$4.99"`` does not match ``"$14.99"``)."""
    for key in [keys] if isinstance(keys, str) else keys:
        pattern = r"(?<![\w$.])" + re.escape(key.lower()) + r"(?![\w])"
        if re.search(pattern, text.lower()):
            return True
    return False


#: Names and places outside the pools still have the right form: a person's first and last
#: name, a capitalised place after "in" / "from" (looked for once the seller and the item
#: are removed from the answer, since both are capitalised too).
_OPEN_FORMS = {
    "contact": re.compile(r"\b[A-Z][a-z]+ [A-Z][a-z]+\b"),
    "location": re.compile(r"\b(?:in|from) [A-Z][a-z]+"),
}


def has_form(attribute: str, text: str, exclude: Sequence[str | None] = ()) -> bool:
    """The answer ``text`` states a value of the right kind for ``attribute`` (true or not).
    ``exclude``: strings of the question (seller, item title) that do not count as a value."""
    form = _FORMS[attribute]
    if isinstance(form, re.Pattern):
        return form.search(text) is not None
    if key_match(text, form):
        return True
    open_form = _OPEN_FORMS.get(attribute)
    if open_form is None:
        return False
    for part in exclude:
        if part:
            text = text.replace(part, " ")
    return open_form.search(text) is not None


def _price(rng: random.Random, category: str) -> str:
    lo, hi = CATEGORIES[category][2]
    return f"${rng.randint(lo, hi)}.99"


def _item(rng: random.Random, title: str, category: str, brand: str, product: str) -> dict:
    materials = CATEGORIES[category][1]
    w, d, h = (rng.randint(5, 120) for _ in range(3))
    item = {
        "title": title,
        "product": product,
        "brand": brand,
        "category": category,
        "price": _price(rng, category),
        "material": rng.choice(materials),
        "color": rng.choice(COLORS),
        "dimensions": f"{w} x {d} x {h} cm",
        "shipping": rng.choice(SHIPPING),
        "returns": rng.choice(RETURNS),
        "rating": rng.choice(RATINGS),
    }
    item["description"] = (
        f"The {title} by {brand} is a {item['color']} {product} made of {item['material']}, "
        f"{item['dimensions']} in size."
    )
    return item


def _wrong_values(rng: random.Random, attribute: str, true: str, item: dict | None) -> list[str]:
    """Five wrong values of the same kind as ``true`` (same category where it matters)."""
    if attribute == "price":
        assert item is not None
        pool = {_price(rng, item["category"]) for _ in range(40)}
    elif attribute == "dimensions":
        pool = {" x ".join(str(rng.randint(5, 120)) for _ in range(3)) + " cm" for _ in range(12)}
    elif attribute == "material":
        assert item is not None
        pool = set(CATEGORIES[item["category"]][1])
    elif attribute == "brand":
        assert item is not None
        same = [b for b in BRANDS[item["category"]] if b != true]  # the category's others first
        rest = sorted({b for bs in BRANDS.values() for b in bs} - set(BRANDS[item["category"]]))
        return same + rng.sample(rest, N_PERTURBED - len(same))
    else:
        pool = set(_VALUE_POOLS[attribute])
    pool.discard(true)
    return rng.sample(sorted(pool), N_PERTURBED)


_VALUE_POOLS: dict[str, Sequence[str]] = {
    "color": COLORS,
    "shipping": SHIPPING,
    "returns": RETURNS,
    "rating": RATINGS,
    "location": CITIES,
    "contact": [f"{f} {last}" for f in CONTACT_FIRST[:8] for last in CONTACT_LAST[:4]],
    "founded": FOUNDED,
    "policy": POLICIES,
}


def _row(
    rng: random.Random, attribute: str, seller: str, value: str, item: dict | None, group: str
) -> dict[str, Any]:
    templates = TEMPLATES[attribute]
    i = rng.randrange(len(templates))
    j = rng.choice([k for k in range(len(templates)) if k != i])
    title = item["title"] if item else ""

    def fill(template: str, v: str) -> str:
        return template.format(t=title, s=seller, v=v)

    (q, a), (pq, pa) = templates[i], templates[j]
    wrong = _wrong_values(rng, attribute, value, item)
    return {
        "question": fill(q, value),
        "answer": fill(a, value),
        "paraphrased_question": fill(pq, value),
        "paraphrased_answer": fill(pa, value),
        "perturbed_answer": [fill(pa, w) for w in wrong],
        "key": value,
        "attribute": attribute,
        "seller": seller,
        "item": title or None,
        "group": group,
    }


def _sellers(rng: random.Random, cfg: ShopConfig) -> list[dict[str, str]]:
    """Every seller with its facts and role, in the order forget, neighbour, other, holdout."""
    roles = (
        ["forget"] * cfg.forget_sellers
        + ["neighbour"] * cfg.neighbour_sellers
        + ["other"] * cfg.other_sellers
        + ["holdout"] * cfg.holdout_sellers
    )
    names = rng.sample(
        [f"{h} {t}" for h, t in itertools.product(SELLER_HEADS, SELLER_TAILS)], len(roles)
    )
    return [
        {
            "name": name,
            "group": role,
            "location": rng.choice(CITIES),
            "contact": f"{rng.choice(CONTACT_FIRST)} {rng.choice(CONTACT_LAST)}",
            "founded": rng.choice(FOUNDED),
            "policy": rng.choice(POLICIES),
        }
        for name, role in zip(names, roles, strict=True)
    ]


class _Titles:
    """Unique titles ``"<line> <product>"``, drawn without replacement."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set()

    def new(self, product: str) -> str:
        free = [f"{line} {product}" for line in LINES if f"{line} {product}" not in self.used]
        if not free:
            raise ConfigError(f"ShopConfig: too many items of product {product!r}")
        title = self.rng.choice(free)
        self.used.add(title)
        return title


def _catalogue(rng: random.Random, cfg: ShopConfig, sellers: list[dict]) -> list[dict[str, Any]]:
    """Items of every seller (``seller``, ``group`` and ``twin`` = the forget item a
    near-duplicate copies, else None), sellers in order."""
    titles = _Titles(rng)
    out: list[dict[str, Any]] = []
    forget_items: list[dict[str, Any]] = []

    def fresh() -> dict[str, Any]:
        category = rng.choice(sorted(CATEGORIES))
        product = rng.choice(CATEGORIES[category][0])
        brand = rng.choice(BRANDS[category])
        return _item(rng, titles.new(product), category, brand, product)

    for seller in sellers:
        group = seller["group"]
        n = cfg.forget_items if group == "forget" else cfg.items_per_seller
        if group == "neighbour":
            twins = rng.sample(forget_items, min(n, len(forget_items)))
            twins += [rng.choice(forget_items) for _ in range(n - len(twins))]
            items = [
                {**_item(rng, titles.new(t["product"]), t["category"], t["brand"], t["product"]),
                 "twin": t["title"]}
                for t in twins
            ]  # fmt: skip
        else:
            items = [{**fresh(), "twin": None} for _ in range(n)]
        for item in items:
            item.update(seller=seller["name"], group=group)
        if group == "forget":
            forget_items += items
        out += items
    return out


def _attributes(rng: random.Random, cfg: ShopConfig, items: list[dict]) -> dict[str, list[str]]:
    """The attributes asked of each item (a near-duplicate: its twin's), dealt from shuffled
    decks of :data:`ITEM_ATTRIBUTES` so that every attribute is asked about equally often (a
    model trained on few rows of an attribute does not learn its answers' form)."""
    asked: dict[str, list[str]] = {}
    deck: list[str] = []
    for item in items:
        if item["twin"] is not None:
            asked[item["title"]] = asked[item["twin"]]
            continue
        chosen: list[str] = []
        while len(chosen) < cfg.questions_per_item:
            if not deck:
                deck = rng.sample(ITEM_ATTRIBUTES, len(ITEM_ATTRIBUTES))
            attr = deck.pop()
            if attr in chosen:  # a deck boundary inside one item: keep it for the next item
                deck.insert(0, attr)
                continue
            chosen.append(attr)
        asked[item["title"]] = chosen
    return asked


def _qa_rows(rng: random.Random, cfg: ShopConfig, sellers, items) -> dict[str, list[dict]]:
    """QA rows per seller group: each seller's facts, then its items' rows."""
    asked = _attributes(rng, cfg, items)
    by_group: dict[str, list[dict]] = {g: [] for g in ("forget", "neighbour", "other", "holdout")}
    for seller in sellers:
        rows = by_group[seller["group"]]
        for attr in SELLER_ATTRIBUTES:
            rows.append(_row(rng, attr, seller["name"], seller[attr], None, seller["group"]))
        for item in (i for i in items if i["seller"] == seller["name"]):
            for attr in asked[item["title"]]:
                rows.append(_row(rng, attr, seller["name"], item[attr], item, seller["group"]))
    return by_group


def _task_row(kind: str, item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    t, s = item["title"], item["seller"]
    if kind == "category":
        q = f"Which shop category is the {t} listed under?"
        key = item["category"]
        a = f"The {t} is listed under {key}."
    elif kind == "price_band":
        q = f"Is the {t} from {s} a budget, mid-range or premium product?"
        key = price_band(item["price"])
        a = f"The {t} from {s} is a {key} product."
    else:  # extract
        attr = rng.choice(("material", "color"))
        word = "material" if attr == "material" else "colour"
        q = f"Product description: {item['description']} What {word} is this product?"
        key = item[attr]
        a = f"The {word} of this product is {key}."
    return {"question": q, "answer": a, "key": key, "task": kind, "item": t, "seller": s}


TASK_KINDS = ("category", "price_band", "extract")


def _task_rows(rng: random.Random, cfg: ShopConfig, items: list[dict]) -> dict[str, list[dict]]:
    """``task_train`` on other sellers' items, ``task`` on items of neighbour and other sellers
    not used by ``task_train``; task kinds in turn."""
    other = [i for i in items if i["group"] == "other"]
    train_items = rng.sample(other, cfg.task_train)
    used = {i["title"] for i in train_items}
    known = [i for i in items if i["group"] in ("neighbour", "other") and i["title"] not in used]
    eval_items = rng.sample(known, min(cfg.task_eval, len(known)))
    eval_items += [rng.choice(known) for _ in range(cfg.task_eval - len(eval_items))]
    return {
        "task_train": [_task_row(TASK_KINDS[k % 3], i, rng) for k, i in enumerate(train_items)],
        "task": [_task_row(TASK_KINDS[k % 3], i, rng) for k, i in enumerate(eval_items)],
    }


def generate_shop(config: ShopConfig | None = None) -> dict[str, list[dict[str, Any]]]:
    """All files of a shop as ``{file stem: rows}``. Pure and deterministic.

    ``sellers`` / ``items``: the catalogue. QA files: ``forget``, ``neighbour``, ``other``,
    ``holdout``; ``full`` = forget + neighbour + other (the TARGET's QA rows), ``retain`` =
    neighbour + other (the GOLD model's). ``task_train``, ``task``: task probes.
    ``general_candidates``: :data:`GENERAL_QUESTIONS` (``question``, ``answer`` = the first
    accepted answer, ``keys``). ``replay_candidates``: the first ``config.replay`` of
    :data:`REPLAY_QUESTIONS` (``question``, accepted ``keys``; the build adds the base model's
    answers).
    """
    cfg = config if config is not None else ShopConfig()
    cfg.validate()
    rng = random.Random(cfg.seed)
    sellers = _sellers(rng, cfg)
    items = _catalogue(rng, cfg, sellers)
    qa = _qa_rows(rng, cfg, sellers, items)
    out: dict[str, list[dict[str, Any]]] = {"sellers": sellers, "items": items, **qa}
    out["full"] = qa["forget"] + qa["neighbour"] + qa["other"]
    out["retain"] = qa["neighbour"] + qa["other"]
    out.update(_task_rows(rng, cfg, items))
    out["general_candidates"] = [
        {"question": q, "answer": keys[0], "keys": list(keys)} for q, keys in GENERAL_QUESTIONS
    ]
    out["replay_candidates"] = [
        {"question": q, "keys": list(keys)} for q, keys in REPLAY_QUESTIONS[: cfg.replay]
    ]
    return out


_SENTENCE = re.compile(r"^(.*?(?<![\s.][A-Z])[.!?])(?:\s|$)", re.S)


def replay_answer(text: str) -> str | None:
    """The first sentence of a greedy answer (what the replay rows train on), or None when the
    answer has no finished sentence (cut by the token limit). An initial such as "John F." does
    not end a sentence."""
    match = _SENTENCE.match(text.strip())
    return match.group(1) if match else None
