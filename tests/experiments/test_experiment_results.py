"""The results table: per-case outcomes from report.json, means and standard deviations over seeds, the paired
bootstrap interval, and results.md / results.csv on hand-made run directories (every number checked by hand)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tl_lightning.experiments.results import (
    CaseOutcomes,
    case_outcomes,
    load_evaluations,
    paired_bootstrap,
    paired_difference,
    rate,
    setting_label,
    two_level_bootstrap,
    write_results,
)


def outcomes(values, den=None, ids=None) -> CaseOutcomes:
    n = len(values)
    return CaseOutcomes(tuple(ids or (f"c{i}" for i in range(n))), np.asarray(values, float),
                        np.ones(n) if den is None else np.asarray(den, float))


def single(ts: list[int]) -> dict:
    cases = [{"id": f"s{i}", "TS": bool(t), "PI": bool(t), "CF": False} for i, t in enumerate(ts)]
    pct = round(100 * sum(ts) / len(ts), 2)
    return {"kind": "single_turn", "TS": pct, "PI": pct, "CF": 0.0, "cases": cases}


def multi(tasks: list[tuple[int, int, bool]]) -> dict:
    """tasks: (calls, DE calls, finished)."""
    cases = [{"id": f"m{i}", "n_calls": c, "DE_calls": de, "CE_calls": 0, "VA": va, "success": None}
             for i, (c, de, va) in enumerate(tasks)]
    calls = sum(c for c, _, _ in tasks)
    return {"kind": "multi_turn", "DE": round(100 * sum(de for _, de, _ in tasks) / calls, 2), "CE": 0.0,
            "VA": round(100 * sum(va for *_, va in tasks) / len(tasks), 2), "cases": cases}


def make_cell(root: Path, name: str, setting: dict, seed: int, ts: list[int], tasks: list[tuple[int, int, bool]],
              stopped_by: str = "max_epochs") -> Path:
    """A cell folder as `python -m tl_lightning cell` leaves it (only what the table reads)."""
    cell = root / name
    reports = {}
    for test_set, report in (("synthetic_single", single(ts)), ("synthetic_multi", multi(tasks))):
        (cell / "sft" / "eval" / test_set).mkdir(parents=True)
        (cell / "sft" / "eval" / test_set / "report.json").write_text(json.dumps(report))
        reports[test_set] = f"sft/eval/{test_set}/report.json"
    status = {"completed": stopped_by != "max_time", "stopped_by": stopped_by}
    record = {"stages": {"sft": {"status": status}},
              "evaluations": [{"model": "sft", "setting": setting, "seed": seed, "reports": reports, "metrics": {}}]}
    (cell / "cell.json").write_text(json.dumps(record))
    return cell


SFT = {"use_mae": False, "use_pkt": False, "irm": False}
MAE = {"use_mae": True, "use_pkt": False, "irm": False}


def test_rate_is_a_ratio_of_sums_and_zero_over_nothing():
    assert rate(np.array([1.0, 0, 1]), np.ones(3)) == pytest.approx(200 / 3)
    assert rate(np.array([1.0, 2]), np.array([3.0, 1])) == 75.0
    assert rate(np.zeros(2), np.zeros(2)) == 0.0
    assert rate(np.array([[1.0, 0], [1, 1]]), np.ones((2, 2))).tolist() == [50.0, 100.0]


def test_case_outcomes_read_the_reports_cases():
    ts = case_outcomes(single([1, 0, 1, 1]), "TS")
    assert ts.ids == ("s0", "s1", "s2", "s3") and ts.num.tolist() == [1, 0, 1, 1] and ts.den.tolist() == [1, 1, 1, 1]
    de = case_outcomes(multi([(3, 1, True), (1, 0, False)]), "DE")
    assert de.num.tolist() == [1, 0] and de.den.tolist() == [3, 1] and rate(de.num, de.den) == 25.0
    report = multi([(1, 0, True), (1, 0, True)])
    report["cases"][0]["success"] = True
    report["success"] = 100.0  # one task checked, and it succeeded; the other has no check
    sc = case_outcomes(report, "success")
    assert sc.num.tolist() == [1, 0] and sc.den.tolist() == [1, 0]


def test_case_outcomes_check_the_report():
    bad = single([1, 0])
    bad["TS"] = 75.0
    with pytest.raises(ValueError, match=r"^r\.json: TS from the cases \(50\.0000\) disagrees with the report's 75\.0$"):
        case_outcomes(bad, "TS", "r.json")
    with pytest.raises(ValueError, match="r.json: expected a multi_turn report"):
        case_outcomes(single([1]), "DE", "r.json")


def test_paired_bootstrap_on_given_resamples_by_hand():
    x = [outcomes([1, 1, 0, 0]), outcomes([1, 0, 1, 0])]  # seeds 0 and 1 of the setting
    b = [outcomes([1, 0, 0, 0]), outcomes([0, 0, 1, 0])]  # seeds 0 and 1 of the baseline
    draws = np.array([[0, 1, 2, 3], [1, 1, 1, 1], [2, 3, 2, 3]])
    # row 0: (50-25 + 50-25)/2 = 25; row 1: (100-0 + 0-0)/2 = 50; row 2: (0-0 + 50-50)/2 = 0
    assert paired_bootstrap(x, b, draws).tolist() == [25.0, 50.0, 0.0]
    # ratio of sums on a resample: DE = (1 + 1 + 0) / (3 + 3 + 1) calls against 0 / 7
    x_de, b_de = outcomes([1, 0, 2], [3, 1, 2]), outcomes([0, 0, 1], [3, 1, 2])
    assert paired_bootstrap([x_de], [b_de], np.array([[0, 0, 1]])).tolist() == pytest.approx([200 / 7])


def test_two_level_bootstrap_on_given_resamples_by_hand():
    x = [outcomes([1, 1, 0, 0]), outcomes([1, 0, 1, 0])]
    b = [outcomes([1, 0, 0, 0]), outcomes([0, 0, 1, 0])]
    draws = np.array([[0, 1, 2, 3], [1, 1, 1, 1], [2, 3, 2, 3]])
    # per pair and row: pair 0 -> 25, 100, 0; pair 1 -> 25, 0, 0
    seeds = np.array([[0, 0], [0, 1], [1, 1]])
    # row 0 draws pair 0 twice: 25; row 1 pairs 0 and 1: (100 + 0) / 2; row 2 pair 1 twice: 0
    assert two_level_bootstrap(x, b, draws, seeds).tolist() == [25.0, 50.0, 0.0]
    # drawing every pair once is the cases-only bootstrap
    assert two_level_bootstrap(x, b, draws, np.array([[0, 1]] * 3)).tolist() == paired_bootstrap(x, b, draws).tolist()


def test_paired_difference_is_the_percentile_interval_of_the_seeded_resamples():
    x = [outcomes([1, 1, 0, 0, 1, 0]), outcomes([1, 0, 1, 0, 1, 1])]
    b = [outcomes([1, 0, 0, 0, 0, 0]), outcomes([0, 0, 1, 0, 1, 0])]
    point, lo, hi = paired_difference(x, b, n_boot=500, seed=3)
    assert point == pytest.approx((50 - 100 / 6 + 400 / 6 - 200 / 6) / 2)
    rng = np.random.default_rng(3)
    draws = rng.integers(0, 6, size=(500, 6))
    reps = two_level_bootstrap(x, b, draws, rng.integers(0, 2, size=(500, 2)))
    assert (lo, hi) == tuple(np.percentile(reps, [2.5, 97.5]))
    assert lo <= point <= hi
    assert paired_difference(x, b, n_boot=500, seed=3) == (point, lo, hi)  # fixed seed: reproducible
    # cases only: the same case resamples, every seed pair kept
    case_only = paired_difference(x, b, n_boot=500, seed=3, resample_seeds=False)
    assert case_only == (point, *np.percentile(paired_bootstrap(x, b, draws), [2.5, 97.5]))


def test_the_seed_level_widens_the_interval_when_seeds_disagree():
    # Two seeds whose differences are +50 and -50 on every case: the cases-only interval sees no noise at all
    x = [outcomes([1, 1, 1, 1]), outcomes([0, 0, 0, 0])]
    b = [outcomes([0, 0, 0, 0]), outcomes([1, 1, 1, 1])]
    assert paired_difference(x, b, n_boot=200, resample_seeds=False) == (0.0, 0.0, 0.0)
    # resampling the seeds draws (+100, +100) or (-100, -100) a quarter of the time each
    assert paired_difference(x, b, n_boot=200) == (0.0, -100.0, 100.0)


def test_paired_difference_aligns_cases_by_id_and_refuses_different_sets():
    x = outcomes([1, 0, 0], ids=["a", "b", "c"])
    flipped = outcomes([0, 0, 1], ids=["c", "b", "a"])
    b = outcomes([0, 0, 0], ids=["a", "b", "c"])
    assert paired_difference([flipped], [b], n_boot=50) == paired_difference([x], [b], n_boot=50)
    with pytest.raises(ValueError, match="not the same test cases"):
        paired_difference([outcomes([1, 0], ids=["a", "z"])], [outcomes([1, 0], ids=["a", "b"])])


def test_a_constant_difference_has_a_zero_width_interval():
    assert paired_difference([outcomes([1, 1, 1])], [outcomes([0, 0, 0])], n_boot=100) == (100.0, 100.0, 100.0)


def test_the_interval_matches_the_normal_approximation_on_many_cases():
    rng = np.random.default_rng(0)
    n = 2000
    x, b = (rng.random(n) < 0.6).astype(float), (rng.random(n) < 0.5).astype(float)
    point, lo, hi = paired_difference([outcomes(x)], [outcomes(b)], n_boot=2000, seed=0)
    half = 1.96 * 100 * np.std(x - b, ddof=1) / math.sqrt(n)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert (lo + hi) / 2 == pytest.approx(point, abs=0.3)


def test_results_table_on_fake_run_directories(tmp_path):
    # TS: SFT seeds 50 / 25, MAE seeds 75 / 50. DE: SFT 1 of 4 calls (25), MAE none (0). VA: SFT 1 of 2, MAE 2 of 2.
    cells = [
        make_cell(tmp_path, "sft0", SFT, 0, [1, 1, 0, 0], [(2, 1, True), (2, 0, False)]),
        make_cell(tmp_path, "sft1", SFT, 1, [1, 0, 0, 0], [(2, 1, True), (2, 0, False)]),
        make_cell(tmp_path, "mae0", MAE, 0, [1, 1, 1, 0], [(2, 0, True), (2, 0, True)]),
        make_cell(tmp_path, "mae1", MAE, 1, [1, 1, 0, 0], [(2, 0, True), (2, 0, True)], stopped_by="max_time"),
    ]
    md, csv_path = write_results(cells, tmp_path / "out", n_boot=2000, seed=0)
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["label"] for r in rows] == ["Standard SFT", "+MAE"]
    base, mae = rows
    assert (float(base["TS_mean"]), float(base["TS_std"])) == (37.5, pytest.approx(25 / math.sqrt(2), abs=1e-4))
    assert (float(mae["TS_mean"]), float(mae["TS_std"])) == (62.5, pytest.approx(17.6777, abs=1e-4))
    assert base["TS_diff"] == "" and base["n_pairs"] == "0" and mae["n_pairs"] == "2" and mae["seeds"] == "0 1"
    assert float(mae["TS_diff"]) == 25.0  # (75 - 50 + 50 - 25) / 2
    # Per-case TS differences averaged over the two seeds: (0, 0.5, 0.5, 0). A resample of 4 cases is all 0 or all
    # 0.5 with probability 1/16 each (> 2.5%), so the cases-only 95% interval is exactly [0, 50].
    assert (float(mae["TS_case_lo"]), float(mae["TS_case_hi"])) == (0.0, 50.0)
    # The seeds disagree on which case they gained (case 2 against case 1): resampling them too cannot narrow it.
    assert float(mae["TS_lo"]) <= 0.0 and float(mae["TS_hi"]) >= 50.0
    # DE: -25 (0 of 4 calls against 1 of 4); a resample holds task 0 k = 0, 1, 2 times (p 1/4, 1/2, 1/4): -0, -25, -50.
    # Both seeds agree here, so resampling them changes nothing.
    for interval in (("DE_lo", "DE_hi"), ("DE_case_lo", "DE_case_hi")):
        assert (float(mae["DE_diff"]), *map(float, map(mae.get, interval))) == (-25.0, -50.0, 0.0)
    assert (float(mae["VA_mean"]), float(mae["VA_diff"]), float(mae["VA_lo"]), float(mae["VA_hi"])) == (100.0, 50.0, 0.0, 100.0)
    assert mae["success_mean"] == "" and mae["incomplete"] == "1" and base["n_synthetic_single"] == "4"
    text = md.read_text()
    assert "| Standard SFT | 0 1 | 37.50 ± 17.68 | 37.50 ± 17.68 | 0.00 ± 0.00 | 25.00 ± 0.00 | 0.00 ± 0.00 | 50.00 ± 0.00 |" in text
    assert "| +MAE | 2 | +25.00 [+0.00, +50.00] |" in text and "success" not in text.split("\n## ")[0].split("| setting")[1]
    assert "+MAE (1)" in text  # the run that max_time stopped is flagged


def test_each_error_rate_is_compared_with_standard_sft_at_that_rate(tmp_path):
    cells = []
    for rate_, sft_ts, mae_ts in ((0.0, [1, 1], [1, 1]), (0.35, [0, 0], [1, 0])):
        cells.append(make_cell(tmp_path, f"s{rate_}", {**SFT, "error_rate": rate_}, 0, sft_ts, [(1, 0, True)]))
        cells.append(make_cell(tmp_path, f"m{rate_}", {**MAE, "error_rate": rate_}, 0, mae_ts, [(1, 0, True)]))
    _, csv_path = write_results(cells, tmp_path / "out", n_boot=100)
    rows = {r["label"]: r for r in csv.DictReader(open(csv_path))}
    assert list(rows) == ["error_rate=0.0: Standard SFT", "error_rate=0.0: +MAE", "error_rate=0.35: Standard SFT",
                          "error_rate=0.35: +MAE"]
    assert float(rows["error_rate=0.0: +MAE"]["TS_diff"]) == 0.0 and float(rows["error_rate=0.35: +MAE"]["TS_diff"]) == 50.0
    assert math.isnan(float(rows["error_rate=0.35: +MAE"]["TS_std"] or "nan"))  # one seed: no standard deviation


def test_a_flag_the_grid_keeps_on_stays_on_in_the_baseline(tmp_path):
    """The sub-word PKT grid keeps MAE on and varies PKT: +MAE +PKT is compared with +MAE, not with a Standard SFT
    the grid never ran."""
    pkt = {"use_mae": True, "use_pkt": True, "irm": False}
    cells = [make_cell(tmp_path, f"{name}{seed}", setting, seed, ts, [(1, 0, True)])
             for seed in (0, 1) for name, setting, ts in (("m", MAE, [1, 0, 0, 0]), ("p", pkt, [1, 1, 1, 0]))]
    md, csv_path = write_results(cells, tmp_path / "out", n_boot=100)
    rows = {r["label"]: r for r in csv.DictReader(open(csv_path))}
    assert list(rows) == ["+MAE", "+MAE +PKT"]
    assert rows["+MAE +PKT"]["n_pairs"] == "2" and float(rows["+MAE +PKT"]["TS_diff"]) == 50.0
    assert rows["+MAE"]["TS_diff"] == ""  # the baseline itself
    assert "## Paired difference from +MAE:" in md.read_text() and "Standard SFT" not in md.read_text()


def test_a_borrowed_run_counts_as_its_seed_and_is_named_in_the_table(tmp_path):
    """The error-rate grid reuses the main grid's 0.17 runs: a cell.json with ``borrowed_from`` whose report paths
    point into the other grid. The table pairs it like any run and says where it came from."""
    main = make_cell(tmp_path / "ablation", "sft0", {**SFT, "error_rate": 0.17}, 0, [0, 0], [(1, 0, True)])
    own = make_cell(tmp_path / "error_rate", "mae0", {**MAE, "error_rate": 0.17}, 0, [1, 0], [(1, 0, True)])
    borrowed = tmp_path / "error_rate" / "borrowed-sft0"
    borrowed.mkdir()
    record = json.loads((main / "cell.json").read_text())
    for e in record["evaluations"]:
        e["reports"] = {k: f"../../ablation/sft0/{v}" for k, v in e["reports"].items()}
    (borrowed / "cell.json").write_text(json.dumps({**record, "borrowed_from": "../../ablation/sft0"}))
    md, csv_path = write_results([own, borrowed], tmp_path / "out", n_boot=100)
    rows = {r["label"]: r for r in csv.DictReader(open(csv_path))}
    assert rows["+MAE"]["n_pairs"] == "1" and float(rows["+MAE"]["TS_diff"]) == 50.0
    assert "Runs reused from another grid" in md.read_text() and "Standard SFT seed 0 from `../../ablation/sft0`" in md.read_text()
    plain, _ = write_results([own, main], tmp_path / "plain", n_boot=100)
    assert "reused" not in plain.read_text()


def test_labels_follow_table_5():
    assert setting_label(SFT) == "Standard SFT"
    assert setting_label({"use_mae": True, "use_pkt": True, "irm": True}) == "+MAE +PKT +IRM"
    assert setting_label({**MAE, "error_rate": 0.17}, varying={"error_rate", "use_mae"}) == "error_rate=0.17: +MAE"


def test_bad_grids_fail_naming_the_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty/cell\.json: cannot read"):
        load_evaluations([tmp_path / "empty"])
    a = make_cell(tmp_path, "a", SFT, 0, [1, 0], [(1, 0, True)])
    b = make_cell(tmp_path, "b", SFT, 0, [1, 1], [(1, 0, True)])
    with pytest.raises(ValueError, match="seed 0 evaluated twice"):
        write_results([a, b], tmp_path / "out")
    c = make_cell(tmp_path, "c", MAE, 0, [1, 1, 1], [(1, 0, True)])  # 3 single-turn cases against 2
    with pytest.raises(ValueError, match="not the same test cases"):
        write_results([a, c], tmp_path / "out")


def test_outcome_groups_partition_the_reward_categories():
    from tl_lightning.experiments.results import OUTCOME_GROUPS
    from tl_lightning.rewards import RewardCategory

    grouped = [c for group in OUTCOME_GROUPS.values() for c in group]
    assert sorted(grouped) == sorted(c.value for c in RewardCategory) and len(grouped) == len(set(grouped))


def test_outcome_rates_per_case_and_in_the_tables(tmp_path):
    report = single([1, 0, 0, 0])
    for case, category in zip(report["cases"], ("correct", "tool_hallucination", "param_missing", "param_missing"), strict=True):
        case["category"] = category
    assert case_outcomes(report, "irm_redundancy_missing").num.tolist() == [0, 0, 1, 1]
    assert rate(*(lambda o: (o.num, o.den))(case_outcomes(report, "irm_invalid"))) == 25.0
    cells = [make_cell(tmp_path, "a", SFT, 0, [1, 0], [(1, 0, True)]), make_cell(tmp_path, "b", MAE, 0, [1, 1], [(1, 0, True)])]
    for cell, categories in zip(cells, (("correct", "wrong_tool"), ("correct", "correct")), strict=True):
        path = cell / "sft" / "eval" / "synthetic_single" / "report.json"
        data = json.loads(path.read_text())
        for case, category in zip(data["cases"], categories, strict=True):
            case["category"] = category
        path.write_text(json.dumps(data))
    md, csv_path = write_results(cells, tmp_path / "out", n_boot=50)
    rows = {r["label"]: r for r in csv.DictReader(open(csv_path))}
    assert float(rows["Standard SFT"]["irm_wrong_tool_mean"]) == 50.0 and float(rows["+MAE"]["irm_wrong_tool_diff"]) == -50.0
    assert "## IRM outcome of each single-turn case" in md.read_text()
    runs = list(csv.DictReader(open(tmp_path / "out" / "runs.csv")))
    assert [(r["label"], r["seed"], r["TS"], r["irm_correct"]) for r in runs] == [
        ("Standard SFT", "0", "50.0", "50.0"), ("+MAE", "0", "100.0", "100.0")]
    assert runs[0]["cell"] == str(tmp_path / "a")  # outside the output folder: kept as given
