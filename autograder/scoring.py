"""The *score* stage: turn cell records and verdicts into each item's points and messages.

An auto-graded item earns, for each of its hidden checks, the check's points times the
fraction its verdict gives, when the check's cell passed in the kernel *and* its verdict
passed; otherwise 0 for that check, with a message saying why (:mod:`autograder.messages`).
A written item is pending: it is graded by hand, unless the template's placeholder is all
the student left there (0 points, with that reason). The same rules give the items of a file that
could not be graded (:func:`rejected_items`) and of a grader failure (:func:`crashed_items`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from autograder import messages
from autograder.checks import Verdict
from autograder.execute import CellRecord
from autograder.merge import MergeResult
from autograder.notebook_format import Item, cell_id, cell_meta, source_text
from autograder.release import ANSWER_PLACEHOLDER
from autograder.report import ItemResult

NOT_JUDGED = Verdict("error", messages.NOT_JUDGED, 0.0)


def written_name(name: str, item: Item) -> str:
    """The name of an item's written part: the item's own, or ``"<item> (written)"`` when the
    item also has auto-graded checks."""
    return name if not item.hidden else f"{name} (written)"


def columns(items: Mapping[str, Item]) -> list[tuple[str, str, float]]:
    """``(name, kind, max_score)`` of every graded part, in notebook order (the gradebook)."""
    cols = []
    for name, it in items.items():
        if it.hidden:
            cols.append((name, "auto", float(it.hidden_points)))
        if it.written:
            cols.append((written_name(name, it), "written", float(it.written_points)))
    return cols


def score_items(merged: MergeResult, cells: Sequence[CellRecord],
                verdicts: Mapping[str, Verdict], timeout: float, secret: list[str],
                error: str | None = None) -> list[ItemResult]:
    """Points and messages per item, from what each cell of the merged notebook did.

    ``error`` says why the run stopped early, for the checks that never ran."""
    records = {c.id: c for c in cells}
    points = {cell_id(c): cell_meta(c).get("points", 0) for c in merged.notebook.cells}
    late = after_first_hidden(merged.notebook, records)
    results: list[ItemResult] = []
    for name, item in merged.items.items():
        if item.hidden:
            results.append(_score_auto(name, item, merged, records, points, verdicts, timeout,
                                       secret, error, late))
        if item.written:
            notes = list(merged.notes.get(name, []))
            answered = [merged.written.get(w, "") for w in item.written]
            if not any(ANSWER_PLACEHOLDER not in a for a in answered):
                # the template's placeholder is all there is: nothing to grade by hand
                results.append(ItemResult(written_name(name, item), "written",
                                          float(item.written_points), 0.0,
                                          [*notes, messages.NOT_ANSWERED]))
                continue
            results.append(ItemResult(written_name(name, item), "written",
                                      float(item.written_points), None,
                                      [*notes, messages.PENDING]))
    return results


#: Statuses of a cell that started to run (the kernel executed some of it).
STARTED = ("passed", "failed", "timeout", "crashed")


def after_first_hidden(notebook, records: Mapping[str, CellRecord]) -> frozenset[str]:
    """Ids of the code cells that come after the first hidden check that started to run, in the
    merged notebook's order (the order the kernel runs it in, re-runs after a crash included):
    from then on the kernel may hold what the student's code read from a check."""
    later, seen = set(), False
    for cell in notebook.cells:
        if cell.get("cell_type") != "code":
            continue
        if seen:
            later.add(cell_id(cell))
        rec = records.get(cell_id(cell))
        if cell_meta(cell).get("role") == "hidden" and rec is not None and rec.status in STARTED:
            seen = True
    return frozenset(later)


def _score_auto(name: str, item: Item, merged: MergeResult, records: Mapping[str, CellRecord],
                points: Mapping[str, int], verdicts: Mapping[str, Verdict], timeout: float,
                secret: list[str], error: str | None,
                late: frozenset[str] = frozenset()) -> ItemResult:
    """The auto-graded part of one item."""
    msgs: list[str] = list(merged.notes.get(name, []))
    checks: list[dict] = []
    score = 0.0
    own = [*item.graded, *item.selfchecks, *item.hidden]
    if any(records.get(c) is not None and records[c].ename == "NotImplementedError"
           for c in own):
        msgs.append(messages.NOT_DONE)
    broken = []
    for gid in item.graded:
        msg = messages.describe_cell(records.get(gid), messages.graded_cell(gid), timeout,
                                     secret, after_hidden=gid in late)
        if msg and records.get(gid) is not None:
            broken.append(gid)
            if messages.NOT_DONE not in msg:
                msgs.append(msg)
    for sid in item.selfchecks:
        rec = records.get(sid)
        if rec is not None and rec.status == "failed":
            first = next(((source_text(c).strip().splitlines() or [""])[0]
                          for c in merged.notebook.cells if cell_id(c) == sid), "")
            msg = messages.describe_cell(rec, messages.selfcheck_cell(sid, first), timeout, secret,
                                         after_hidden=sid in late)
            if messages.NOT_DONE not in msg and not (broken and rec.ename == "NameError"):
                msgs.append(msg)
    for n, hid in enumerate(item.hidden, start=1):
        rec, pts = records.get(hid), float(points.get(hid, 0))
        label = messages.check_label(n, len(item.hidden), pts)
        earned, msg = 0.0, messages.describe_cell(rec, label, timeout, secret, hidden=True)
        if error and rec is None:
            msg = messages.check_not_run(label, error)
        elif msg and broken and rec and rec.ename == "NameError":
            msg = messages.check_blocked_by(label, broken[0])
        elif msg and messages.NOT_DONE in msg:
            msg = messages.check_not_done(label)
        if msg is None:
            verdict = verdicts.get(hid, NOT_JUDGED)
            fraction = float(verdict.fraction)
            text = messages.verdict_text(verdict.message or "", secret, verdict.keep)
            if verdict.status != "passed":
                fraction = 0.0
                msg = (messages.check_not_attempted(label) if "NotImplementedError" in text
                       else messages.check_failed(label, text) if verdict.status == "failed"
                       else messages.check_not_judged(label, text))
            elif fraction < 1.0:
                msg = messages.check_partial(label, text)
            earned = pts * fraction
        # the check's verdict, not whether its cell ran (that is "cell")
        verdict_status = ("not run" if rec is None else "passed" if msg is None
                          else "partial" if earned > 0 else "failed")
        checks.append({"id": hid, "points": pts, "earned": earned, "status": verdict_status,
                       "cell": rec.status if rec else "not run"})
        score += earned
        if msg and msg not in msgs:
            msgs.append(msg)
    return ItemResult(name, "auto", float(item.hidden_points), score, msgs, checks)


def rejected_items(items: Mapping[str, Item]) -> list[ItemResult]:
    """A file that could not be graded: 0 on every auto-graded item, written items pending."""
    results = []
    for name, it in items.items():
        if it.hidden:
            results.append(ItemResult(name, "auto", float(it.hidden_points), 0.0,
                                      [messages.REJECTED]))
        if it.written:
            results.append(ItemResult(written_name(name, it), "written",
                                      float(it.written_points), None, [messages.REJECTED]))
    return results


def crashed_items(items: Mapping[str, Item]) -> list[ItemResult]:
    """The grader failed on a submission: 0 on every auto-graded item, written pending."""
    results = [ItemResult(name, "auto", float(it.hidden_points), 0.0, [messages.GRADER_FAILED])
               for name, it in items.items() if it.hidden]
    results += [ItemResult(written_name(name, it), "written", float(it.written_points), None,
                           [messages.PENDING_SHORT]) for name, it in items.items() if it.written]
    return results
