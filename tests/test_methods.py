"""The method registry: names, options, what each method needs, and the loss it returns."""

from __future__ import annotations

import pytest
import torch

from unilogit import losses
from unilogit.errors import ConfigError
from unilogit.methods import METHODS, Method, StepBatch, get_method, register, unit_count

EXPECTED = {"unilogit", "ga", "graddiff", "npo", "simnpo", "undial", "idkdpo", "rmu"}


def test_registry_has_every_method():
    assert EXPECTED <= set(METHODS)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ConfigError) as err:
        get_method("unilogitt")
    for name in EXPECTED:
        assert name in str(err.value)


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigError, match="beta"):
        get_method("npo", betta=0.2)


def test_bad_retain_kind():
    with pytest.raises(ConfigError, match="retain_loss"):
        get_method("unilogit", retain_loss="mse")


@pytest.mark.parametrize(
    ("name", "options", "needs"),
    [
        ("unilogit", {}, False),  # the point of the method: no reference model with NLL retain
        ("unilogit", {"retain_loss": "kl"}, True),
        ("unilogit", {"target": "reference"}, True),
        ("ga", {}, False),
        ("graddiff", {}, False),
        ("simnpo", {}, False),
        ("npo", {}, True),
        ("undial", {}, True),
        ("idkdpo", {}, True),
        ("rmu", {}, True),
        ("rmu", {"retain_loss": None}, False),
    ],
)
def test_reference_needs(name, options, needs):
    assert get_method(name, **options).needs_reference is needs


def test_default_retain_terms():
    assert get_method("ga").retain_kind is None
    assert get_method("graddiff").retain_kind == "nll"
    assert get_method("undial").retain_kind is None
    assert get_method("unilogit").retain_kind == "nll"
    assert get_method("unilogit", retain_loss="none").retain_kind is None


def test_config_records_everything():
    cfg = get_method("npo", beta=0.2, retain_weight=0.5).config()
    assert cfg == {
        "method": "npo",
        "retain_loss": "nll",
        "retain_weight": 0.5,
        "forget_weight": 1.0,
        "beta": 0.2,
    }


def _batch(labels: list[list[int]], vocab: int = 7) -> dict[str, torch.Tensor]:
    lab = torch.tensor(labels)
    ids = lab.clamp(min=0)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": lab}


def test_unit_counts():
    batch = _batch([[-100, -100, 3, 4], [-100, 2, 3, -100]])
    assert unit_count(batch, "tokens") == 4  # shifted labels: [-100,3,4] and [2,3,-100]
    assert unit_count(batch, "sequences") == 2
    assert unit_count(batch, "positions") == 8


class _LinearLM(torch.nn.Module):
    """A bigram 'language model': logits[t] = W[input_ids[t]]."""

    def __init__(self, vocab: int = 7) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, dtype=torch.float64))

    def forward(self, input_ids, attention_mask=None):
        class Out:
            pass

        out = Out()
        out.logits = self.table[input_ids]
        return out


def test_graddiff_total_is_weighted_sum():
    model = _LinearLM()
    forget = _batch([[-100, 1, 2, 3]])
    retain = _batch([[-100, 4, 5, 6]])
    method = get_method("graddiff", retain_weight=0.25)
    terms = method.loss(StepBatch(model=model, forget={"forget": forget}, retain=retain))
    logits_f, t_f = losses.shift_labels(model(forget["input_ids"]).logits, forget["labels"])
    logits_r, t_r = losses.shift_labels(model(retain["input_ids"]).logits, retain["labels"])
    expected = -losses.nll_loss(logits_f, t_f) + 0.25 * losses.nll_loss(logits_r, t_r)
    torch.testing.assert_close(terms.total(), expected)
    assert terms.counts == {"forget": 3.0, "retain": 3.0}


def test_new_method_is_one_small_class():
    """The registry is open: a new method is a subclass with a forget loss."""

    @register("test-double-ga")
    class DoubleGA(Method):
        default_retain = None

        def forget_loss(self, step):
            batch = step.forget["forget"]
            logits, targets = losses.shift_labels(
                step.model(batch["input_ids"]).logits, batch["labels"]
            )
            return 2 * losses.ga_loss(logits, targets)

    try:
        model = _LinearLM()
        batch = _batch([[-100, 1, 2, 3]])
        value = get_method("test-double-ga").loss(StepBatch(model=model, forget={"forget": batch}))
        ga = get_method("ga").loss(StepBatch(model=model, forget={"forget": batch}))
        torch.testing.assert_close(value.total(), 2 * ga.total())
    finally:
        METHODS.pop("test-double-ga")


def test_options_are_typed_by_their_defaults():
    """The CLI's text values take the type of the option's default; a wrong one is refused
    with the option and method named."""
    from unilogit.methods import parse_option

    assert parse_option("npo", "beta", "0.25") == 0.25
    assert parse_option("undial", "gamma", "10") == 10
    assert parse_option("unilogit", "fused", "true") is True
    assert parse_option("unilogit", "chunk_size", "64") == 64
    assert parse_option("unilogit", "divergence", "forward") == "forward"
    assert parse_option("unilogit", "retain_weight", "0") == 0
    assert parse_option("rmu", "layer", "3") == 3  # default None: JSON
    assert parse_option("npo", "retain_loss", "kl") == "kl"
    cases = [
        ("npo", "beta", "abc", "option 'beta' of method 'npo' expects a number, got 'abc'"),
        ("npo", "beta", "nan", "option 'beta' of method 'npo' expects a number"),
        ("unilogit", "fused", "maybe", "expects true or false"),
        ("unilogit", "chunk_size", "1.5", "option 'chunk_size' of method 'unilogit' expects an"),
        ("npo", "forget_weight", "x", "option 'forget_weight' of method 'npo'"),
    ]
    for method, key, text, message in cases:
        with pytest.raises(ConfigError) as err:
            parse_option(method, key, text)
        assert message in str(err.value)


def test_methods_check_option_types_from_python():
    with pytest.raises(ConfigError, match="option 'beta' of method 'npo' expects a number"):
        get_method("npo", beta="abc")
    with pytest.raises(ConfigError, match="option 'retain_weight' of method 'ga'"):
        get_method("ga", retain_weight="heavy")
    assert get_method("undial", gamma=3).hp["gamma"] == 3  # an int passes for a float


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_rmu_freezes_exactly_what_its_loss_cannot_reach(layer):
    """Every parameter RMU freezes gets no gradient from its forget term, and every one it
    keeps does, at each layer of a 3-layer model. Before: at the last layer the final norm was
    frozen although the last hidden state is taken after it (transformers' hidden_states[-1])."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    method = get_method("rmu", layer=layer, retain_loss=None)
    ids = torch.randint(0, 32, (2, 5))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    method.loss(StepBatch(model, {"forget": batch})).total().backward()
    frozen = {id(p) for p in method.frozen_parameters(model)}
    assert frozen  # at least the LM head
    for name, p in model.named_parameters():
        reached = p.grad is not None and bool(p.grad.abs().sum() > 0)
        assert reached != (id(p) in frozen), name
