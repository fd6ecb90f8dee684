"""Verdicts in killable processes: a costly answer, a deep or huge payload, a memory hog each
cost their own check only, with a message naming the limit, and never slow down another check.

Issue #12, attack class 3: a short SymPy answer made ``simplify`` run for minutes while holding
a lock every other student's verdict waited on; deep or huge JSON reached the grader unchecked.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import nbformat
import pytest
import torch

from autograder import nbval_plugin
from autograder.checks import CheckFormatError, run_verdict, split_check
from autograder.observe import MIME, encode

ROOT = Path(__file__).resolve().parent.parent

DOUBLE = """\
import torch
from autograder.observe import observe
x = torch.arange(4.0)
# --- student ---
obs = observe(y=double(x))
# --- verdict ---
assert torch.equal(obs["y"], 2 * x), "wrong"
"""


def _sympy_check(limits_line: str) -> str:
    """DDPM's real hidden check of the SymPy answers, with a limits line in its verdict."""
    nb = json.loads((ROOT / "solutions" / "ddpm.ipynb").read_text())
    source = next("".join(c["source"]) for c in nb["cells"] if c.get("id") == "ddpm-sympy-hidden")
    return source.replace("# --- verdict ---\n", f"# --- verdict ---\n{limits_line}\n", 1)


HONEST = {"mean_x2": "sqrt(alpha_1*alpha_2)*x_0", "var_x2": "1 - alpha_1*alpha_2",
          "kl_T": "(alphabar*x_0**2 - alphabar - log(1 - alphabar))/2"}
#: Equal to the right answer, but ``simplify`` needs minutes to see it (expanding a 40th power).
BOMB = dict(HONEST, mean_x2=(
    "sqrt(alpha_1*alpha_2)*x_0 + (alpha_1 + alpha_2 + x_0)**40 - (alpha_1**2 + alpha_2**2 + "
    "x_0**2 + 2*alpha_1*alpha_2 + 2*alpha_1*x_0 + 2*alpha_2*x_0)**20"))


def _timed(parts, payloads, results, key, **kwargs):
    start = time.perf_counter()
    results[key] = (run_verdict(parts, payloads, **kwargs), time.perf_counter() - start)


def test_a_verdict_bomb_costs_its_own_check_only_and_an_honest_one_beside_it_is_prompt():
    parts = split_check(_sympy_check("# verdict-limits: cpu_s=3"))
    assert run_verdict(parts, [encode(HONEST)]).status == "passed"  # the check works
    results: dict = {}
    bomb = threading.Thread(target=_timed, args=(parts, [encode(BOMB)], results, "bomb"),
                            kwargs={"timeout": 60})
    bomb.start()
    time.sleep(0.5)  # the bomb is being judged now
    _timed(parts, [encode(HONEST)], results, "honest")
    bomb.join()
    honest, honest_s = results["honest"]
    verdict, bomb_s = results["bomb"]
    assert honest.status == "passed" and honest.fraction == 1.0
    assert honest_s < 10.0, f"the honest verdict waited {honest_s:.1f} s behind the bomb"
    assert verdict.status == "error" and verdict.fraction == 0.0
    assert "more than 3 s of CPU time" in verdict.message, verdict.message
    assert bomb_s < 30.0  # killed at its CPU limit, not at the wall-clock limit


def test_verdicts_of_different_students_run_at_the_same_time():
    parts = split_check(DOUBLE.replace('assert', 'time.sleep(1.5)\nassert').replace(
        "import torch", "import time\nimport torch", 1))
    results: dict = {}
    threads = [threading.Thread(target=_timed, args=(parts, [encode({"y": torch.arange(4.0) * 2})],
                                                     results, n)) for n in range(4)]
    run_verdict(parts, [encode({"y": torch.arange(4.0) * 2})])  # the zygote is warm
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(v.status == "passed" for v, _ in results.values())
    assert time.perf_counter() - start < 4.0  # four 1.5 s verdicts, not one after the other


def test_a_verdict_that_allocates_too_much_memory_is_stopped_and_costs_its_check_only():
    hog = split_check("import torch\nfrom autograder.observe import observe\n# --- student ---\n"
                      "obs = observe(n=1)\n# --- verdict ---\n# verdict-limits: memory_mb=256\n"
                      "big = torch.ones(obs['n'] * 2**28)  # 1 GiB of float32\n")
    verdict = run_verdict(hog, [encode({"n": 1})])
    assert verdict.status == "error" and verdict.fraction == 0.0
    assert "more than the 256 MB of memory" in verdict.message, verdict.message
    python_hog = split_check(hog.setup + "# --- student ---\nobs = observe(n=1)\n"
                             "# --- verdict ---\n# verdict-limits: memory_mb=256\n"
                             "big = bytearray(obs['n'] * 2**30)\n")
    assert "256 MB" in run_verdict(python_hog, [encode({"n": 1})]).message
    ok = run_verdict(split_check(DOUBLE), [encode({"y": torch.arange(4.0) * 2})])
    assert ok.status == "passed"  # the next check is judged as usual


def test_a_verdict_past_its_cpu_limit_is_stopped_with_that_reason():
    spin = split_check("from autograder.observe import observe\n# --- student ---\n"
                       "obs = observe(n=1)\n# --- verdict ---\n# verdict-limits: cpu_s=1\n"
                       "while obs['n']:\n    pass\n")
    verdict = run_verdict(spin, [encode({"n": 1})], timeout=30)
    assert verdict.status == "error" and "more than 1 s of CPU time" in verdict.message


def _deep(levels: int):
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def _sent(payload) -> list:
    """What the pytest process keeps of one display output carrying ``payload``."""
    outputs = [{"output_type": "display_data", "data": {MIME: payload, "text/plain": "x"}}]
    found = nbval_plugin._observations(outputs)
    json.dumps(found)  # the pytest process can send it back on its pipe
    assert MIME not in outputs[0]["data"]  # the executed notebook keeps a placeholder only
    return found


def test_a_deep_payload_gets_a_clear_message_and_costs_its_check_only():
    found = _sent({"values": {"__dict__": {"y": _deep(100_000)}}})
    verdict = run_verdict(split_check(DOUBLE), found)
    assert verdict.status == "error" and verdict.fraction == 0.0
    assert "the measurements your code sent nest deeper than 8 levels" in verdict.message
    fine = _sent(encode({"y": torch.arange(4.0) * 2}))
    assert run_verdict(split_check(DOUBLE), fine).status == "passed"


def test_a_huge_payload_gets_a_clear_message_and_a_check_may_ask_for_more():
    big = encode({"y": torch.zeros(5 * 2**20)})  # 20 MB of float32
    verdict = run_verdict(split_check(DOUBLE), _sent(big))
    assert verdict.status == "error" and "are larger than 16 MB" in verdict.message
    roomy = split_check(DOUBLE.replace("# --- verdict ---\n",
                                       "# --- verdict ---\n# verdict-limits: payload_mb=32\n"))
    assert run_verdict(roomy, _sent(big)).status == "failed"  # read, and judged: zeros are wrong
    text = _sent({"values": {"__dict__": {"y": "x" * (40 * 2**20)}}})
    assert "are larger than 16 MB" in run_verdict(split_check(DOUBLE), text).message


def test_limited_json_refuses_deep_long_and_large_documents_before_parsing():
    from autograder import limited_json

    small = limited_json.JsonLimits(max_bytes=1000, max_depth=4, max_string=50, what="the data")
    assert limited_json.loads(b'{"a": [1, [2, "x]]"]]}', small) == {"a": [1, [2, "x]]"]]}
    with pytest.raises(limited_json.LimitError, match="nest deeper than 64 levels"):
        limited_json.loads(b"[" * 200_000 + b"]" * 200_000,
                           limited_json.RESULTS.__class__(10**7, 64, 10**6))
    assert limited_json.loads('[[["[[[[\\"[["]]]', small) == [[['[[[[\"[[']]]  # in strings: text
    with pytest.raises(limited_json.LimitError, match="nest deeper than 4"):
        limited_json.loads("[[[[[1]]]]]", small)
    with pytest.raises(limited_json.LimitError, match="longer than 50"):
        limited_json.loads('["' + "a" * 51 + '"]', small)
    with pytest.raises(limited_json.LimitError, match="larger than"):
        limited_json.loads("[" + "1," * 600 + "1]", small)
    assert "nest deeper" in limited_json.refusal(_deep(100_000), small)
    assert limited_json.refusal({"a": [1, "b"]}, small) is None


def test_the_grader_reads_the_pytest_results_through_the_limits():
    runner = (ROOT / "autograder" / "runner.py").read_text()
    assert "limited_json.loads(b\"\".join(chunks), limited_json.RESULTS)" in runner


@pytest.mark.parametrize("line, reason", [
    ("# verdict-limits: cpu=3", "keys cpu_s, memory_mb, payload_mb"),
    ("# verdict-limits: cpu_s=0", "positive whole number"),
    ("# verdict-limits: cpu_s=2.5", "positive whole number"),
    ("# verdict-limits: cpu_s=2 cpu_s=3", "twice"),
    ("# verdict-limits:", "names no limit"),
    ("# verdict-limits: cpu_s=2\n# verdict-limits: memory_mb=9", "one"),
])
def test_malformed_limits_lines_are_rejected(line, reason):
    with pytest.raises(CheckFormatError, match=reason):
        split_check(DOUBLE.replace("# --- verdict ---\n", f"# --- verdict ---\n{line}\n"))


def test_limits_default_and_are_capped():
    from autograder.verdicts import CAPS, VerdictLimits, parse_limits

    assert parse_limits("assert True") == VerdictLimits(60, 3072, 16)
    assert parse_limits("# verdict-limits: memory_mb=4096") == VerdictLimits(60, 4096, 16)
    assert parse_limits("  #  verdict-limits: cpu_s=99999 payload_mb=999") == VerdictLimits(
        CAPS.cpu_s, 3072, CAPS.payload_mb)


# --- end to end: the real grading command ---------------------------------------------------

SYM_CHECK = """\
import sympy as sp
from autograder.observe import observe
# --- student ---
obs = observe(answer=str(ANSWER))
# --- verdict ---
# verdict-limits: cpu_s=3
from sympy.parsing.sympy_parser import parse_expr
x = sp.Symbol("x")
got = parse_expr(obs["answer"], local_dict={"x": x})
assert sp.simplify(got - 2 * x) == 0, f"expected 2*x, got {got}"
"""
DOUBLE_CHECK = DOUBLE.replace("double(x)", "double_it(x)")


def _cell(kind, cid, source, meta=None):
    new = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    cell = new(source, id=cid)
    if meta:
        cell.metadata["dgm"] = meta
        cell.metadata["tags"] = [meta["role"]]
    return cell


def _homework(answer: str, sends: str = ""):
    return nbformat.v4.new_notebook(cells=[
        _cell("markdown", "intro", "# Two items"),
        _cell("code", "sym", f"### BEGIN SOLUTION\nANSWER = {answer!r}\n{sends}### END SOLUTION",
              {"item": "sym", "points": 2, "role": "graded"}),
        _cell("code", "sym-hidden", SYM_CHECK,
              {"item": "sym", "points": 2, "role": "hidden", "after": "sym"}),
        _cell("code", "dbl", "### BEGIN SOLUTION\ndef double_it(v):\n    return 2 * v\n"
              "### END SOLUTION", {"item": "double", "points": 1, "role": "graded"}),
        _cell("code", "dbl-hidden", DOUBLE_CHECK,
              {"item": "double", "points": 1, "role": "hidden", "after": "dbl"}),
    ])


#: An answer whose str() also sends a 600-deep measurement from inside the hidden check.
DEEP_SEND = f"""
class _Answer:
    def __str__(self):
        from IPython.display import display
        deep = []
        for _ in range(600):
            deep = [deep]
        display({{{MIME!r}: {{"values": {{"__dict__": {{"answer": deep}}}}}}}}, raw=True)
        return "2*x"


ANSWER = _Answer()
"""


def test_a_bomb_and_a_deep_payload_graded_beside_an_honest_submission_cost_their_items_only(
        tmp_path):
    from autograder import grade

    source, subs, out = tmp_path / "source", tmp_path / "subs", tmp_path / "out"
    source.mkdir()
    subs.mkdir()
    nbformat.write(_homework("2*x"), source / "sym.ipynb")
    nbformat.write(_homework("2*x"), subs / "honest.ipynb")
    nbformat.write(_homework(BOMB_X), subs / "bomb.ipynb")
    nbformat.write(_homework("2*x", DEEP_SEND), subs / "deep.ipynb")
    code = grade.main(["--assignment", "sym", "--source", str(source), str(subs), "--out",
                       str(out), "--jobs", "2", "--device", "cpu", "--profile", "smoke",
                       "--timeout", "60", "--no-progress"])
    assert code == 0
    results = {s: json.loads((out / s / "results.json").read_text())
               for s in ("honest", "bomb", "deep")}
    scores = {s: {t["name"]: t["score"] for t in r["tests"]} for s, r in results.items()}
    assert scores == {"honest": {"sym": 2.0, "double": 1.0}, "bomb": {"sym": 0.0, "double": 1.0},
                      "deep": {"sym": 0.0, "double": 1.0}}
    bomb = next(t["output"] for t in results["bomb"]["tests"] if t["name"] == "sym")
    assert "more than 3 s of CPU time" in bomb and "kernel had stopped" not in bomb
    deep = next(t["output"] for t in results["deep"]["tests"] if t["name"] == "sym")
    assert "nest deeper than 8 levels" in deep and "kernel had stopped" not in deep


#: 2*x, written so that ``simplify`` must expand a 40th power of a three-term sum.
BOMB_X = "2*x + (x + y + z)**40 - (x**2 + y**2 + z**2 + 2*x*y + 2*x*z + 2*y*z)**20"


def test_a_verdict_gets_the_classifier_the_zygote_loaded_without_reading_the_cache_again():
    from autograder import verdicts
    from dgm.evaluate import get_classifier

    get_classifier(profile="smoke")  # on disk first, as the grader's own copy puts it there
    verdicts.start(("smoke",))  # what `grade` does before any kernel runs
    check = split_check(
        "import torch\nfrom autograder.observe import observe\n# --- student ---\n"
        "obs = observe(n=1)\n# --- verdict ---\nimport dgm.evaluate as ev\n\n\n"
        "def refuse(*args, **kwargs):\n    raise AssertionError('the cache was read again')\n\n\n"
        "torch.load = refuse\nclf = ev.get_classifier(profile='smoke')\n"
        "assert any(clf is c for c in ev._LOADED.values()) and ev.TRAINING_RUNS == 0\n"
        "assert next(clf.parameters()).device.type == 'cpu' and torch.get_num_threads() == 1\n")
    verdict = run_verdict(check, [encode({"n": 1})])
    assert verdict.status == "passed", verdict.message
