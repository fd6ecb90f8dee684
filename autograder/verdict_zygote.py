"""What the verdict zygote imports and loads once, before it forks any verdict process.

Imported by ``multiprocessing``'s fork server (see :mod:`autograder.verdicts`), never by the
grader itself. Verdicts run on the CPU with one torch thread, so CUDA is hidden before torch is
imported (a process forked after CUDA started cannot use it). The evaluation classifiers of the
profiles named in ``DGM_GRADER_VERDICT_CLASSIFIERS`` are loaded now: every forked verdict gets
this copy, never one read later from a cache a student kernel might have written.
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["DGM_DEVICE"] = "cpu"
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"


def _warm() -> None:
    import numpy  # noqa: F401
    import sympy
    import torch
    from sympy.parsing.sympy_parser import parse_expr

    import autograder.observe  # noqa: F401
    import autograder.verdicts  # noqa: F401

    torch.set_num_threads(1)
    x = sympy.Symbol("x", positive=True)
    sympy.simplify(parse_expr("sqrt(x**2) + log(exp(x))", local_dict={"x": x}))
    profiles = [p for p in os.environ.pop("DGM_GRADER_VERDICT_CLASSIFIERS", "").split(",") if p]
    if profiles:
        from dgm.evaluate import get_classifier

        for profile in profiles:
            get_classifier(profile=profile)


try:
    _warm()
except Exception as exc:  # noqa: BLE001 - a verdict that needs what failed says so itself
    import sys

    print(f"autograder: the verdict zygote could not preload everything ({type(exc).__name__}: "
          f"{exc})", file=sys.stderr)
