"""The RESULTS.md section for benchmarks/results/peers_grader.json (ours against otter-grader
and nbgrader); benchmarks/report.py calls :func:`peers_section`."""

from __future__ import annotations

NAMES = {"ours_sandbox": "ours, sandbox on", "ours_no_sandbox": "ours, sandbox off",
         "otter_run": "otter-grader (`otter run`)", "nbgrader_autograde": "nbgrader (`autograde`)"}


def cell(row: dict) -> str:
    """One submission's outcome under one grader, in a word or two."""
    if row.get("result") == "no result":
        return "no result" + (" (killed)" if row.get("killed") else "")
    word = "caught" if row.get("caught") else "**missed**"
    if row.get("collateral"):
        word += (" (its tampering zeroed its other items too)" if row.get("mistake", "").startswith("tamper")
                 else ", other items lost")
    return word


def shown(row: dict) -> bool:
    """Whether a hidden test's text reached what the student is shown: nbgrader's feedback, our
    feedback, or an otter test whose Gradescope visibility is not ``hidden``."""
    if "in_feedback_visibility" in row:
        return any(v != "hidden" for v in row["in_feedback_visibility"])
    return bool(row.get("in_feedback"))


def peers_section(lines: list[str], data: dict | None, machine_line, fmt) -> None:
    if not data:
        return
    s, per = data["summary"], data["per_submission"]
    v = data.get("versions", {}).get("peers", {})
    lines += ["### This grader against otter-grader and nbgrader", "", machine_line(data),
              f" Load average {', '.join(fmt(x, 1) for x in data.get('load_average_start', []))} at the "
              f"start, {', '.join(fmt(x, 1) for x in data.get('load_average_end', []))} at the end "
              "(a shared machine: absolute times are inflated, the graders ran interleaved). "
              f"otter-grader {v.get('otter-grader', '?')}, nbgrader {v.get('nbgrader', '?')}; "
              f"{data['settings']['submissions']} submissions, each graded by one command, cell "
              f"timeout {fmt(data['settings']['cell_timeout_s'], 0)} s. Overhead is the wall time "
              "minus the student's own code (its cells and the calls the tests make, run in-process "
              "in a fresh interpreter); its mean leaves out the never-ending loop. "
              + (f"Rows graded again after a load spike made the benchmark kill them: "
                 f"{', '.join(data['remeasured'])} (each row keeps its date). " if data.get("remeasured") else "")
              + "A hidden test shown: its text in nbgrader's `generate_feedback` page, in our "
              "feedback or results, or in an otter test not marked `hidden` for Gradescope "
              "(otter also writes a failing hidden test's source into results.json, marked hidden).", "",
              "| grader | mean wall (s) | mean wall without the loop (s) | mean overhead (s) | "
              "median overhead (s) | mistakes caught | correct ones marked down | "
              "submissions whose feedback shows a hidden test |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for g, name in NAMES.items():
        if g in s:
            r = s[g]
            lines.append(f"| {name} | {fmt(r['mean_wall_s'])} | {fmt(r['mean_wall_s_without_loop'])} | "
                         f"{fmt(r['mean_overhead_s'])} | {fmt(r['median_overhead_s'])} | "
                         f"{r['caught']}/{r['wrong_submissions']} | {r['false_alarms']} | "
                         f"{sum(shown(x) for x in per[g].values())} |")
    lines += ["", "| submission | planted mistake (item) | " + " | ".join(NAMES[g] for g in NAMES if g in per) + " |",
              "| --- | --- | " + " | ".join("---" for g in NAMES if g in per) + " |"]
    for name, m in data.get("mistakes", {}).items():
        lines.append(f"| {name} | {m['mistake'].replace('_', ' ')} ({m['item']}) | "
                     + " | ".join(cell(per[g][name]) for g in NAMES if g in per) + " |")
    if data.get("batch"):
        lines += ["", "| whole class in one command | wall (s) | per submission (s) |", "| --- | --- | --- |"]
        for g, r in data["batch"].items():
            lines.append(f"| {NAMES.get(g, g)} | {fmt(r['wall_s'])} | {fmt(r['per_submission_s'], 2)} |")
    lines.append("")
