"""Helper package of the Deep Generative Models course.

Code that a chapter introduces and a later chapter, a homework or the autograder reuses lives
here, one short module per topic; each function's docstring names the chapter and equation
that introduced it. Import what you need from the submodules, e.g.
``from dgm.data import load_dataset``.
"""

__version__ = "0.1.0"
