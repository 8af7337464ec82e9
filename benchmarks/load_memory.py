"""Peak host memory (max RSS) of :func:`unilogit.models.load_model`, each load in a fresh process.

::

    PYTHONPATH=src python benchmarks/load_memory.py [--model DIR] [--dtypes float32,bfloat16]

Default model: the cached float32 SmolLM2-135M-Instruct (:func:`unilogit.pretrained.smollm2_dir`,
538 MB of weights). For each dtype a subprocess imports torch + transformers, records its max RSS
(the baseline: libraries only), loads the model on the CPU and records the max RSS again;
the table shows both and their difference (what loading cost). Run it with the ``src`` of two
checkouts to compare two versions of ``load_model``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import torch, transformers  # noqa: F401  (the baseline: libraries imported)
from unilogit.models import load_model
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model, _ = load_model(sys.argv[1], dtype=sys.argv[2], device="cpu")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
weights = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"base_kb": base, "peak_kb": peak, "weights_bytes": weights,
                  "dtype": str(next(model.parameters()).dtype)}))
"""


def measure(model: str, dtype: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, model, dtype],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model directory (default: the cached SmolLM2 float32)")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--repeat", type=int, default=2, help="loads per dtype (the minimum is kept)")
    args = p.parse_args()
    if args.model is None:
        from unilogit.pretrained import smollm2_dir

        args.model = str(smollm2_dir(progress=False))
    print(f"model: {args.model}")
    print("| dtype | weights MB | RSS before load MB | peak RSS MB | load cost MB |")
    print("|---|---|---|---|---|")
    for dtype in args.dtypes.split(","):
        runs = [measure(args.model, dtype) for _ in range(args.repeat)]
        r = min(runs, key=lambda x: x["peak_kb"])
        mb = 1024
        print(
            f"| {r['dtype']} | {r['weights_bytes'] / 2**20:.0f} | {r['base_kb'] / mb:.0f} | "
            f"{r['peak_kb'] / mb:.0f} | {(r['peak_kb'] - r['base_kb']) / mb:.0f} |"
        )


if __name__ == "__main__":
    main()
