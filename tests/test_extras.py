"""Packaging (issue 16): the core works without the optional dependencies, and a feature that
needs one names the extra that installs it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ["scipy", "rouge_score", "nltk", "matplotlib", "gguf", "tensorboard", "wandb"]
OPTIONAL += ["datasets", "pyarrow"]

BLOCK = f"""
import sys
for name in {OPTIONAL!r}:
    sys.modules[name] = None  # `import name` now fails as if it were not installed
"""


def run_blocked(code: str, *args: str) -> subprocess.CompletedProcess:
    src = str(ROOT / "src")
    tests = str(ROOT / "tests")
    return subprocess.run(
        [sys.executable, "-c", BLOCK + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": f"{src}:{tests}", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


def test_the_core_imports_and_trains_without_the_optional_dependencies():
    """Before: unilogit.trainer imported fine, but `import unilogit.eval.metrics` (scipy at
    module level) failed, and every optional package was a hard dependency."""
    out = run_blocked(
        """
        import unilogit.losses, unilogit.methods, unilogit.trainer, unilogit.recipes
        import unilogit.cli.main, unilogit.eval.metrics, unilogit.report, unilogit.config_file
        from tiny import qa_rows, tiny_llama, word_tokenizer
        from unilogit import unlearn
        tok = word_tokenizer()
        rows = qa_rows()
        model, history = unlearn(tiny_llama(len(tok)), tok, rows[:4], rows[4:12],
                                 epochs=1, batch_size=2, lr=1e-3, progress=False)
        blocked = [m for m in {OPTIONAL!r} if sys.modules.get(m) is not None]
        print("steps", history.total_steps, "loaded", blocked)
        """.replace("{OPTIONAL!r}", repr(OPTIONAL))
    )
    assert out.returncode == 0, out.stderr
    assert "steps 2 loaded []" in out.stdout


def test_a_missing_extra_is_named(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"")  # exists: load_model gets as far as needing gguf
    out = run_blocked(
        """
        from unilogit.errors import ConfigError
        from unilogit.eval import metrics
        from unilogit import report, data, models
        checks = [
            (lambda: metrics.forget_quality([0.1, 0.2], [0.3, 0.4]), "eval"),
            (lambda: metrics.rouge_l(["a b"], ["a c"]), "eval"),
            (lambda: report._figure(), "report"),
            (lambda: data.load_examples("hf:json:x.jsonl"), "data"),
            (lambda: models.load_model(sys.argv[1]), "gguf"),
        ]
        for call, extra in checks:
            try:
                call()
            except ConfigError as e:
                assert f"pip install 'unilogit[{extra}]'" in str(e), str(e)
                print("named", extra)
            else:
                raise AssertionError(f"no error for {extra}")
        """,
        str(tmp_path / "x.gguf"),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["named", "eval"] * 2 + ["named", "report", "named", "data"] + [
        "named",
        "gguf",
    ]


def test_the_declared_core_holds_no_optional_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {
        d.split(">")[0].split("=")[0].replace("-", "_").lower() for d in project["dependencies"]
    }
    assert not core & set(OPTIONAL)
    extras = project["optional-dependencies"]
    assert {"eval", "report", "gguf", "track", "data", "all"} <= set(extras)
    assert (ROOT / "src" / "unilogit" / "py.typed").is_file()
