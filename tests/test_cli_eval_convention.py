"""`unilogit eval --metrics-convention`: recorded in the output, an open-unlearning log as
--reference, and a reference made under another convention refused with one error line."""

from __future__ import annotations

import json

from unilogit.cli.main import main


def test_eval_metrics_convention_and_ou_log_reference(shared_dir, tmp_path, capsys):
    gguf = str(shared_dir / "models" / "stories260K.gguf")
    tofu = ["--benchmark", "tofu", "--data-dir", str(shared_dir / "data" / "tofu")]
    common = [*tofu, "--max-rows", "3", "--no-generate", "--no-progress", "--model", gguf]
    exact = tmp_path / "exact.json"
    assert main(["eval", *common, "--metrics-convention", "exact", "--output", str(exact)]) == 0
    ref = json.loads(exact.read_text())
    assert ref["metrics_convention"]["name"] == "exact"
    assert ref["prompt_format"]["source"] == "default"
    assert "ou_names" in ref and "forget_truth_ratio" in ref["ou_names"]

    # TOFU's default is open-unlearning: the exact reference is refused
    out = tmp_path / "out.json"
    code = main(["eval", *common, "--reference", str(exact), "--output", str(out)])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error:") and "another convention" in last
    assert not out.exists()

    # an open-unlearning TOFU_EVAL.json (3 forget rows) as the reference
    ratios = ref["splits"]["forget"]["truth_ratios"]
    log = {
        "forget_truth_ratio": {
            "agg_value": 0.5,
            "value_by_index": {str(i): {"score": r} for i, r in enumerate(ratios)},
        },
        "mia_min_k": {"agg_value": 0.5},
    }
    ou_log = tmp_path / "TOFU_EVAL.json"
    ou_log.write_text(json.dumps(log))
    assert main(["eval", *common, "--reference", str(ou_log), "--output", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["metrics_convention"]["name"] == "open-unlearning"
    assert res["reference"]["kind"] == "open-unlearning log"
    assert res["ou_names"]["forget_quality"] == res["forget_quality"]
    assert res["ou_names"]["privleak"] == res["privleak"]
