"""Every model chapter has one shape, and the check of that shape catches a chapter out of order.

The rule (tests/chapter_rules.py): the chapters of _toc.yml's "Generative models" and
"Representation learning and adversarial models" parts have the second-level sections Overview,
The model, The derivation, The implementation, one or more Experiment sections, Summary,
Exercises, in that order, and no labelled equation after the implementation. The other chapters
that run code (the foundations and the comparison) have their own middle but open with an
Overview and end with Summary and Exercises. book/notation.md is a reference table, not a chapter.
"""

from __future__ import annotations

import pytest
from chapter_rules import (MODEL_PARTS, chapter_text, frame_errors, model_chapters, sections,
                           shape_errors, toc_parts)

GOOD = """(x-chapter)=
# A model

## Overview

Text.

```{code-cell} ipython3
# a comment is not a heading
## nor is this
```

## The model

$$
p(x) = 1
$$ (x-model)

## The derivation: why

### A step

$$
a = b
$$ (x-step)

## The implementation

## Experiment: one

## Experiment: two

## Summary

## Exercises
"""


def test_the_model_parts_hold_the_eight_model_chapters():
    assert model_chapters() == ["autoregressive", "vae", "diffusion", "score_guidance", "flow_matching",
                                "flows", "contrastive", "gans"]


@pytest.mark.parametrize("chapter", model_chapters())
def test_model_chapter_sections_follow_the_books_order(chapter):
    assert shape_errors(chapter_text(chapter)) == []


@pytest.mark.parametrize("chapter", ["probability", "evaluation", "sequence_models", "comparison"])
def test_other_chapters_open_with_an_overview_and_close_with_summary_and_exercises(chapter):
    assert frame_errors(chapter_text(chapter)) == []


def test_every_chapter_with_code_is_checked_by_one_of_the_two_rules():
    parts = toc_parts()
    checked = set(model_chapters()) | {"probability", "evaluation", "sequence_models", "comparison"}
    with_code = {name for names in parts.values() for name in names
                 if "kernelspec" in chapter_text(name) and name not in ("homework", "instructor")}
    assert with_code == checked and set(MODEL_PARTS) <= set(parts)


def test_headings_inside_code_cells_are_not_sections():
    assert [title for title, _ in sections(GOOD)][:3] == ["", "Overview", "The model"]
    assert shape_errors(GOOD) == []


def test_a_derivation_after_the_implementation_is_caught():
    planted = GOOD.replace("## The derivation: why\n\n### A step\n\n$$\na = b\n$$ (x-step)\n", "").replace(
        "## The implementation\n", "## The implementation\n\n## The derivation: why\n")
    errors = shape_errors(planted)
    assert errors and "The derivation" in errors[0]


def test_a_bold_overview_instead_of_a_heading_is_caught():
    planted = GOOD.replace("## Overview\n\nText.", "**Overview.** Text.")
    assert "'Overview'" in shape_errors(planted)[0]


def test_an_equation_derived_inside_an_experiment_is_caught():
    planted = GOOD.replace("## Experiment: two\n", "## Experiment: two\n\n$$\nc = d\n$$ (x-late)\n")
    assert shape_errors(planted) == [
        "equation (x-late) is stated under 'Experiment: two': equations belong to the model, the "
        "derivation or the implementation, before the experiments"]


def test_a_missing_experiment_and_an_extra_section_are_caught():
    assert shape_errors(GOOD.replace("## Experiment: one\n\n## Experiment: two\n", ""))
    assert shape_errors(GOOD + "\n## Further reading\n")


def test_a_foundations_chapter_without_an_overview_is_caught():
    assert frame_errors(GOOD.replace("## Overview", "## Introduction"))
    assert frame_errors(GOOD) == []
