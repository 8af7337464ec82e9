"""The report with several seeds (median, spread, fronts of medians, error-bar plots), the
hypervolume table and the over-forgetting column, from synthetic records (no models)."""

from __future__ import annotations

from unilogit.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: (method, seed) -> [(log10 FQ, MU, KL forget, KL retain, P forget)] at steps 2 and 4.
TABLE = {
    ("unilogit", 0): [(-3.0, 0.50, 1.0, 0.10, 0.30), (-1.0, 0.40, 0.5, 0.20, 0.20)],
    ("unilogit", 1): [(-5.0, 0.60, 1.2, 0.10, 0.40), (-2.0, 0.45, 0.6, 0.25, 0.25)],
    ("unilogit", 2): [(-4.0, 0.55, 1.1, 0.12, 0.35), (-1.5, 0.50, 0.7, 0.30, 0.10)],
    ("npo", 0): [(-6.0, 0.30, 2.0, 0.50, 0.05), (-8.0, 0.20, 3.0, 0.90, 0.01)],
    ("npo", 1): [(-7.0, 0.35, 2.2, 0.60, 0.06), (-9.0, 0.25, 3.1, 1.00, 0.02)],
    ("npo", 2): [(-6.5, 0.40, 2.4, 0.55, 0.07), (-8.5, 0.30, 3.2, 0.95, 0.03)],
}


def _records(seeds=(0, 1, 2)):
    recs = [
        {"kind": "baseline", "method": "target", "epoch": 0, "final": True, "run_id": "target",
         "forget_quality": 1e-12, "forget_quality_log10": -12.0, "model_utility": 0.6,
         "forget/kl_to_gold": 3.0, "retain/kl_to_gold": 0.02, "forget/probability": 0.8},
        {"kind": "baseline", "method": "retain", "epoch": 0, "final": True, "run_id": "retain",
         "forget_quality": 1.0, "forget_quality_log10": 0.0, "model_utility": 0.59,
         "forget/kl_to_gold": 0.0, "retain/kl_to_gold": 0.0, "forget/probability": 0.25},
    ]  # fmt: skip
    for (method, seed), evals in TABLE.items():
        if seed not in seeds:
            continue
        for step, (fq, mu, klf, klr, p) in zip((2, 4), evals, strict=True):
            recs.append(
                {"kind": "run", "method": method, "lr": 1e-3, "epochs": 2, "seed": seed,
                 "epoch": step / 2, "step": step, "final": step == 4,
                 "run_id": f"{method}-lr0.001-ep2-s{seed}", "forget_quality": 10**fq,
                 "forget_quality_log10": fq, "model_utility": mu, "forget/kl_to_gold": klf,
                 "retain/kl_to_gold": klr, "forget/probability": p}
            )  # fmt: skip
    return recs


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}")[1].split("\n## ")[0]


def test_seeds_section_medians_spread_and_plots(tmp_path):
    paths = write_report(_records(), tmp_path)
    md = paths["md"].read_text(encoding="utf-8")
    seeds = _section(md, "Seeds: median and spread")
    assert "min–max over the seeds" in seeds
    # unilogit step 2: log10 FQ (-3, -5, -4) -> median -4 -> FQ 1e-4 [1e-5–1e-3]; MU 0.55 [0.5–0.6]
    table = seeds.split("### Every evaluation point")[1]
    row = next(ln for ln in table.splitlines() if ln.startswith("| unilogit lr=1e-3 | 2 |"))
    assert "| 1.0e-04 [1.0e-05–0.001] |" in row and "| 0.550 [0.500–0.600] |" in row
    # P(forget) median 0.35 -> P/P_gold = 0.35/0.25 = 1.4 [1.2–1.6]
    assert "| 1.4 [1.2–1.6] |" in row
    for key in ("seeds_1", "seeds_2", "seeds_paths"):  # FQ-MU, KL forget-retain, along runs
        assert paths[key].read_bytes().startswith(PNG_MAGIC)
        assert f"]({paths[key].name})" in md
    fronts = seeds.split("### Each method's front of medians: KL to gold: forget vs retain")[1]
    # npo's KL medians: step 2 (2.2, 0.55) and step 4 (3.1, 0.95): only step 2 is on its front
    assert "| npo lr=1e-3 | 2 | 1 | 2.2 [2–2.4] | 0.55 [0.5–0.6] |" in fronts
    assert "| npo lr=1e-3 | 4 |" not in fronts.split("###")[0]


def test_hypervolume_table_over_seed_medians(tmp_path):
    """npo's medians: step 2 (log10 FQ -6.5, MU 0.35) -> (0.35, 0.35); step 4 (-8.5, 0.25)
    -> (0.15, 0.25), dominated. HV(FQ, MU) = 0.35 · 0.35 = 0.1225 -> "0.122" (ties to even:
    0.1225 is stored as 0.12249...). The target (FQ 1e-12 -> 0) scores 0, the gold model
    its MU 0.590."""
    md = write_report(_records(), tmp_path)["md"].read_text(encoding="utf-8")
    hv = _section(md, "Hypervolume per method")
    assert "the medians over seeds" in hv and "[-10, 0]" in hv
    assert "| npo | 0.122 |" in hv
    assert "| target | 0.000 |" in hv and "| retain | 0.590 | 1.000 | 1 |" in hv


def test_one_seed_keeps_todays_report_plus_hypervolume(tmp_path):
    paths = write_report(_records(seeds=(0,)), tmp_path)
    md = paths["md"].read_text(encoding="utf-8")
    assert "## Seeds" not in md and not any(k.startswith("seeds_") for k in paths)
    hv = _section(md, "Hypervolume per method")
    assert "(the evaluations)" in hv
    # npo seed 0: (-6, 0.30) -> (0.4, 0.3); (-8, 0.2) -> (0.2, 0.2), dominated: 0.12
    assert "| npo | 0.120 |" in hv
    assert paths["html"].read_text(encoding="utf-8").count("data:image/png;base64,") == 3


def test_over_forgetting_column_beside_the_probability(tmp_path):
    md = write_report(_records(seeds=(0,)), tmp_path)["md"].read_text(encoding="utf-8")
    final = _section(md, "Final epoch of every run")
    header = final.strip().splitlines()[0]
    assert "| P(forget) | P/P_gold |" in header
    # npo seed 0, final: P 0.01 -> 0.01 / 0.25 = 0.04 (over-forgotten); the gold row: 1
    assert "| 0.010 | 0.04 |" in next(ln for ln in final.splitlines() if "| npo lr" in ln)
    assert "| 0.250 | 1 |" in next(ln for ln in final.splitlines() if ln.startswith("| retain"))
    assert "P/P_gold: the forget-set probability over the gold model's (0.250" in md


def test_best_per_method_uses_seed_medians(tmp_path):
    """With several seeds one lucky seed does not pick a method's best: unilogit's best single
    evaluation is seed 0 at step 4 (log10 FQ -1.0, MU 0.40), but the best MEDIAN point is step 4
    with log10 FQ median(-1, -2, -1.5) = -1.5 (FQ 0.0316) and MU median(0.40, 0.45, 0.50)."""
    md = write_report(_records(), tmp_path)["md"].read_text(encoding="utf-8")
    best = _section(md, "Best evaluation per method (same rule for all)")
    assert "one lucky seed does not decide" in best
    row = next(ln for ln in best.splitlines() if ln.startswith("| unilogit"))
    assert row.startswith("| unilogit lr=1e-3 (median of 3 seeds) | 2/2 | 0.032 | 0.450 |"), row
    one = write_report(_records(seeds=(0,)), tmp_path / "one")["md"].read_text(encoding="utf-8")
    row = next(
        ln
        for ln in _section(one, "Best evaluation per method (same rule for all)").splitlines()
        if ln.startswith("| unilogit")
    )
    assert row.startswith("| unilogit lr=1e-3 | 2/2 | 0.1 | 0.400 |"), row


def test_kl_plot_is_symlog_so_a_collapsed_run_does_not_squeeze_the_rest(tmp_path, monkeypatch):
    """KL spans orders of magnitude (a collapsed run: 40, a good one: 0.05) and the gold
    model's is 0: the KL front plot puts both axes on a symmetric log scale; FQ-MU stays linear."""
    import unilogit.report_seeds as seeds_mod

    scales = {}
    real = seeds_mod.save_png

    def spy(fig, path):
        ax = fig.axes[0]
        scales[path.name] = (ax.get_xscale(), ax.get_yscale())
        return real(fig, path)

    monkeypatch.setattr(seeds_mod, "save_png", spy)
    paths = write_report(_records(), tmp_path)
    assert scales[paths["seeds_2"].name] == ("symlog", "symlog")  # KL forget vs retain
    assert scales[paths["seeds_1"].name] == ("linear", "linear")  # FQ vs MU
