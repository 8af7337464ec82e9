"""Unlearn a tiny Llama and save its parameters: run by tests/test_distributed.py.

One process (imported by the test, ``batch_size=4``) or N processes under accelerate launch::

    ACCELERATE_USE_CPU=1 accelerate launch --config_file configs/accelerate/cpu_2proc.yaml \\
        tests/ddp_script.py OUT.pt --batch-size 2

Each run in :data:`RUNS` starts from the same seeded model; 5 forget rows with a global batch
of 4 leave a 1-row tail micro-batch each epoch, so under 2 processes one process has no rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny import qa_rows, tiny_llama, word_tokenizer  # noqa: E402

#: name -> unlearn options (besides batch_size)
RUNS: dict[str, dict] = {
    "unilogit": {"method": "unilogit"},
    "unilogit_fused": {"method": "unilogit", "fused": True, "chunk_size": 8},
    "npo_accum": {"method": "npo", "grad_accum": 2},
    # RMU reads layer 0 only: later layers get no gradient (DDP needs them frozen).
    "rmu": {"method": "rmu"},
}


def _initial_model(vocab_size: int) -> torch.nn.Module:
    model = tiny_llama(vocab_size, seed=0)
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)  # p_k far from 1/V: a non-vanishing Unilogit term
    return model


def run_initial_state() -> torch.Tensor:
    """The flattened state_dict every run starts from (to check that training moved it)."""
    model = _initial_model(len(word_tokenizer()))
    return torch.cat([v.flatten() for v in model.state_dict().values()])


def run(batch_size: int, names: list[str] | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """{run name: {parameter name: tensor}} after a short unlearning run per entry of RUNS."""
    from unilogit import unlearn

    tokenizer = word_tokenizer()
    out = {}
    for name in names or list(RUNS):
        model = _initial_model(len(tokenizer))
        model, history = unlearn(
            model,
            tokenizer,
            qa_rows()[:5],
            qa_rows()[5:],
            epochs=2,
            batch_size=batch_size,
            lr=1e-3,
            warmup_ratio=0.0,
            progress=False,
            seed=0,
            **RUNS[name],
        )
        out[name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        out[name]["__losses__"] = torch.tensor([s["loss"] for s in history.steps])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="where the main process saves {run: state_dict}")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--runs", nargs="*", choices=sorted(RUNS), help="default: all")
    args = parser.parse_args()
    from accelerate import PartialState

    result = run(args.batch_size, args.runs)
    state = PartialState()
    if state.is_main_process:
        torch.save(result, args.output)
    state.wait_for_everyone()


if __name__ == "__main__":
    main()
