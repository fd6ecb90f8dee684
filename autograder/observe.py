"""Measurements a hidden check sends from the student's kernel to the grader.

A hidden check runs in two places (see :mod:`autograder.checks`). In the student's kernel it
only *measures*: it builds its inputs, calls the student's code and hands the raw results to
:func:`observe`, which publishes them as one display output of MIME type :data:`MIME`. The
*verdict* (tolerances, bands, reference values) is decided afterwards in the grader's own
process from those measurements, so nothing the student's code overwrites in its kernel
(``assert`` helpers, ``torch.allclose``, builtins, IPython's exception hooks, printed text)
can change it: forging a passing verdict means producing the right numbers.

Values travel as JSON: ``None``, ``bool``, ``int``, ``str``, ``float`` (NaN and infinities
included), lists and tuples, dicts with string keys, and NumPy arrays or torch tensors (sent as
raw bytes with dtype and shape, decoded back to the same kind). :func:`decode` checks
everything it reads: the grader treats a measurement as untrusted data.
"""

from __future__ import annotations

import base64
import math

MIME = "application/vnd.dgm.observation+json"
#: Largest measurement payload the grader reads for one check by default (bytes of array data,
#: before base64); a check may ask for more with ``# verdict-limits: payload_mb=...``
#: (:mod:`autograder.verdicts`), up to KERNEL_MAX_BYTES, which is all the kernel sends.
MAX_BYTES = 16 * 2**20
KERNEL_MAX_BYTES = 256 * 2**20
MAX_DEPTH = 8
#: Array dtypes a measurement may hold.
DTYPES = ("bool", "uint8", "int8", "int16", "int32", "int64", "float32", "float64")


class ObservationError(ValueError):
    """A measurement could not be encoded or decoded; the message says which and why."""


# --- kernel side ------------------------------------------------------------------------------

def forget_source() -> None:
    """Erase the source of the cell that calls this from the kernel's memory before it runs on.

    A hidden check's kernel part is the first thing it does (:data:`autograder.checks.
    KERNEL_PRELUDE`): the student's functions it calls, and every later cell, must not find its
    text and carry it out in an exception message. IPython keeps a cell's source in
    ``linecache`` (for tracebacks), in ``In``/``_ih``/``_i``/``_iiN``, in the history
    manager's caches and in the kernel's current request; all of them are blanked. (The grader
    starts kernels with the history database off, see :mod:`autograder.nbval_patches`.)
    """
    import linecache
    import sys

    frame = sys._getframe(1)
    name = frame.f_code.co_filename
    entry = linecache.cache.pop(name, None)
    source = "".join(entry[2]) if entry else None
    try:
        ip = get_ipython()  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        return
    marker = "forget_source()"

    def secret(text) -> bool:
        return isinstance(text, str) and (marker in text or (source is not None and text == source))

    hm = getattr(ip, "history_manager", None)
    if hm is not None:
        for hist in (hm.input_hist_parsed, hm.input_hist_raw):
            for i, text in enumerate(hist):
                if secret(text):
                    hist[i] = ""
        with hm.db_input_cache_lock:
            hm.db_input_cache[:] = [row for row in hm.db_input_cache
                                    if not any(secret(t) for t in row[1:])]
    for key, value in list(ip.user_ns.items()):
        if key.startswith("_i") and secret(value):
            ip.user_ns[key] = ""
    kernel = getattr(ip, "kernel", None)
    try:
        parent = kernel.get_parent("shell") if kernel is not None else None
    except Exception:  # an older ipykernel: nothing to blank there
        parent = None
    if isinstance(parent, dict) and isinstance(parent.get("content"), dict):
        parent["content"]["code"] = ""

def _encode(value, depth: int, budget: list[int]):
    if depth > MAX_DEPTH:
        raise ObservationError(f"measurements nest deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else {"__int__": str(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, (list, tuple)):
        return [_encode(v, depth + 1, budget) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise ObservationError("dict measurements need string keys")
        return {"__dict__": {k: _encode(v, depth + 1, budget) for k, v in value.items()}}
    module = type(value).__module__ or ""
    kind = None
    if module.startswith("torch"):
        import torch

        if isinstance(value, torch.Size):
            return [int(v) for v in value]
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu")
            if t.dtype in (torch.float16, torch.bfloat16):
                t = t.float()
            array, kind = t.contiguous().numpy(), "torch"
    elif module.startswith("numpy"):
        import numpy as np

        array, kind = np.asarray(value), "numpy"
        if array.ndim == 0 and not isinstance(value, np.ndarray):
            return _encode(array.item(), depth, budget)
    if kind is None:
        raise ObservationError(f"cannot send a {type(value).__name__} as a measurement")
    if str(array.dtype) not in DTYPES:
        array = array.astype("float64")
    budget[0] -= array.nbytes
    if budget[0] < 0:
        raise ObservationError(f"measurements larger than {KERNEL_MAX_BYTES // 2**20} MB")
    import numpy as np

    return {"__array__": kind, "dtype": str(array.dtype), "shape": list(array.shape),
            "data": base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")}


def encode(values: dict) -> dict:
    """The JSON payload for ``values`` (a dict of named measurements)."""
    return {"values": _encode(dict(values), 0, [KERNEL_MAX_BYTES])}


def observe(**values) -> dict:
    """Send named measurements to the grader; return them as the grader will decode them (call
    it in a hidden check's student section as ``obs = observe(...)``, so that the whole cell
    also runs top to bottom outside the grader, and its verdict sees the same values there:
    CPU tensors without gradients, lists for tuples)."""
    payload = encode(values)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python: nothing to send to
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display({MIME: payload, "text/plain": "[measurements sent to the grader]"}, raw=True)
    return decode([payload], KERNEL_MAX_BYTES)  # exactly what the grader's verdict will see


def partial(fraction: float, message: str = "") -> None:
    """Outside the grader, say what partial credit a verdict would give (the grader injects
    its own ``partial`` into the verdict section)."""
    print(f"partial credit: {float(fraction):.2f} of the points. {message}".rstrip())


#: Exceptions torch and NumPy define that :func:`shown_exception` names (a fixed list: a notebook can
#: give a class of its own any name and module, so neither is trusted by itself).
LIBRARY_EXCEPTIONS = frozenset({"OutOfMemoryError", "LinAlgError", "AxisError", "DeferredCudaCallError",
                                "AcceleratorError", "TooHardError", "_LinAlgError"})
#: What :func:`shown_exception` says of any other class; ``{base}`` is Python's own class it derives from.
NOTEBOOK_EXCEPTION = "an exception of a class the notebook defined (derived from {base})"
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set on every class made by a class statement or type()


def _type_attr(cls: type, name: str):
    """``cls.<name>`` read through ``type``'s own descriptor: a metaclass cannot fake it."""
    return type.__dict__[name].__get__(cls, type)


def shown_exception(exc: BaseException) -> str:
    """What a hidden check may record of an exception the student's code raised: its type only.

    Never the message: the code that raised it can read the check's frame (its locals, the names
    and constants of its code) and put them there. The name too is trusted only where the notebook
    cannot have chosen it: Python's built-in classes (not heap types, so no class statement makes
    one) and a fixed list of torch and NumPy classes (:data:`LIBRARY_EXCEPTIONS`). Any other class
    is described by the built-in class it derives from.
    """
    cls = type(exc)
    name, module = _type_attr(cls, "__name__"), _type_attr(cls, "__module__")
    if not _type_attr(cls, "__flags__") & _HEAPTYPE and module == "builtins":
        return name
    if str(module).split(".")[0] in ("torch", "numpy") and name in LIBRARY_EXCEPTIONS:
        return name
    base = next((b for b in _type_attr(cls, "__mro__")
                 if not _type_attr(b, "__flags__") & _HEAPTYPE and _type_attr(b, "__module__") == "builtins"),
                BaseException)
    return NOTEBOOK_EXCEPTION.format(base=_type_attr(base, "__name__"))


# --- grader side ------------------------------------------------------------------------------

def _decode(value, depth: int, budget: list[int]):
    if depth > MAX_DEPTH + 2:
        raise ObservationError(f"the measurements your code sent nest deeper than {MAX_DEPTH} "
                               "levels")
    if isinstance(value, str):  # never the marks of a check's own constants (messages.told)
        return value.replace("\ue000", "").replace("\ue001", "")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, list):
        return [_decode(v, depth + 1, budget) for v in value]
    if not isinstance(value, dict):
        raise ObservationError(f"unexpected {type(value).__name__} in measurements")
    if set(value) == {"__int__"}:
        return int(str(value["__int__"]))
    if set(value) == {"__float__"}:
        text = str(value["__float__"])
        if text not in ("nan", "inf", "-inf"):
            raise ObservationError(f"unexpected float {text!r}")
        return float(text)
    if set(value) == {"__dict__"} and isinstance(value["__dict__"], dict):
        return {_decode(str(k), depth, budget): _decode(v, depth + 1, budget)
                for k, v in value["__dict__"].items()}
    if set(value) == {"__array__", "dtype", "shape", "data"}:
        import numpy as np

        dtype, shape = value["dtype"], value["shape"]
        if dtype not in DTYPES or not isinstance(shape, list) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise ObservationError(f"bad array header (dtype {dtype!r}, shape {shape!r})")
        if not isinstance(value["data"], str) or len(value["data"]) * 3 // 4 > budget[0]:
            raise ObservationError(f"measurements larger than {budget[1] / 2**20:g} MB")
        raw = base64.b64decode(value["data"], validate=True)
        budget[0] -= len(raw)
        if budget[0] < 0:
            raise ObservationError(f"measurements larger than {budget[1] / 2**20:g} MB")
        count = math.prod(shape)
        if count * np.dtype(dtype).itemsize != len(raw):
            raise ObservationError(f"array data does not match shape {shape} and dtype {dtype}")
        array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        if value["__array__"] == "torch":
            import torch

            return torch.from_numpy(array)
        if value["__array__"] == "numpy":
            return array
        raise ObservationError(f"unknown array kind {value['__array__']!r}")
    raise ObservationError("unexpected object in measurements")


def decode(payloads: list, max_bytes: int = MAX_BYTES) -> dict:
    """Merge the payloads one check cell published (later values win) into one dict, reading at
    most ``max_bytes`` of array data."""
    merged: dict = {}
    budget = [max_bytes, max_bytes]
    for payload in payloads or []:
        if not isinstance(payload, dict) or not isinstance(payload.get("values"), dict):
            raise ObservationError("a measurement payload is not a dict of values")
        values = _decode(payload["values"], 0, budget)
        if not isinstance(values, dict):
            raise ObservationError("a measurement payload is not a dict of values")
        merged.update(values)
    return merged
