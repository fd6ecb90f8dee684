"""The course's grading package.

``python -m autograder release`` generates the student notebooks from ``solutions/``
(:mod:`autograder.release`); ``python -m autograder grade`` grades submissions
(:mod:`autograder.grade`, the command line; :mod:`autograder.pipeline`, its stages in order).
Both read notebooks through :mod:`autograder.notebook_format`.
"""
