"""The course's grading package.

``python -m autograder release`` generates the student notebooks from ``solutions/``
(:mod:`autograder.release`); ``python -m autograder grade`` grades submissions
(:mod:`autograder.grade`, the command line; :mod:`autograder.pipeline`, its stages in order).
Both read notebooks through :mod:`autograder.notebook_format`.
"""

import sys as _sys

# jsonschema (through nbformat) imports the optional rfc3987_syntax, which builds 38 parsers at
# import time: seconds per grading command, for IRI formats nbformat's schema never checks.
_sys.modules.setdefault("rfc3987_syntax", None)
