"""The pure parts of benchmarks/peers_grader.py: reading otter's results and deciding whether a
grader caught a planted mistake (the timings themselves are the benchmark's, not a test's)."""

from __future__ import annotations

from benchmarks import peers_assignment as A
from benchmarks.peers_grader import GRADERS, merged, parse_otter, verdict


def test_parse_otter_sums_each_items_tests():
    results = {"tests": [{"name": "Public Tests", "score": 0},
                         {"name": "logpdf - 1", "score": 2.0},
                         {"name": "dists - 1", "score": 0.0}, {"name": "dists - 2", "score": 1.5},
                         {"name": "softmax", "score": None}]}
    assert parse_otter(results) == {"Public Tests": 0.0, "logpdf": 2.0, "dists": 1.5,
                                    "softmax": 0.0}
    assert parse_otter({}) == {}


def _row(**scores):
    return {"scores": {"logpdf": 2.0, "dists": 2.0, "softmax": 2.0, **scores}}


def test_verdict_on_a_scoring_mistake():
    sub = A.Submission(dict(A.SOLUTIONS), "wrong_formula", "dists")
    assert verdict(sub, _row(dists=0.0)) == {"result": "graded", "caught": True,
                                             "collateral": False, "false_alarm": None}
    assert verdict(sub, _row())["caught"] is False            # full marks for a wrong answer
    assert verdict(sub, _row(dists=0.0, softmax=0.0))["collateral"] is True
    assert verdict(sub, {"killed": True}) == {"result": "no result", "caught": False,
                                              "collateral": None, "false_alarm": None}


def test_verdict_on_a_correct_submission_and_a_leak():
    correct = A.Submission(dict(A.SOLUTIONS))
    assert verdict(correct, _row())["false_alarm"] is False
    assert verdict(correct, _row(logpdf=0.0))["false_alarm"] is True
    leak = A.Submission(dict(A.SOLUTIONS), "print_hidden", "dists")
    assert A.expected_scores(leak) == {"logpdf": 2.0, "dists": 2.0, "softmax": 2.0}
    assert verdict(leak, {**_row(), "leaked_to_drop": False})["caught"] is True
    assert verdict(leak, {**_row(), "leaked_to_drop": True})["caught"] is False


def test_the_class_plants_one_known_mistake_per_wrong_submission():
    subs = A.submissions("/nonexistent")
    assert len(subs) == 20
    wrong = {n: s for n, s in subs.items() if s.mistake}
    assert len(wrong) == 12 and all(s.item in A.ITEMS for s in wrong.values())
    for name, sub in wrong.items():  # exactly one item's code differs from the solution
        changed = [i for i in A.ITEMS if sub.code[i] != A.SOLUTIONS[i]]
        assert changed == [sub.item] or (not changed and sub.test_cell), name


def test_merge_replaces_the_regraded_rows_and_recounts():
    subs = A.submissions("/nonexistent")
    row = {"wall_s": 5.0, "overhead_s": 4.0, "caught": None, "false_alarm": False}
    killed = {"wall_s": 60.0, "overhead_s": 59.0, "result": "no result", "caught": None,
              "false_alarm": True}
    old = {"per_submission": {g: {n: dict(killed if n == "correct_6" else row) for n in subs}
                              for g in GRADERS}}
    new = merged(old, {g: {"correct_6": dict(row)} for g in GRADERS}, {})
    for g in GRADERS:
        assert new["per_submission"][g]["correct_6"]["wall_s"] == 5.0
        assert "measured" in new["per_submission"][g]["correct_6"]
        assert new["summary"][g]["false_alarms"] == 0
        assert new["summary"][g]["mean_wall_s"] == 5.0
    assert new["remeasured"] == ["correct_6"]
