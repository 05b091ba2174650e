"""Checking what callers pass, then turning it into the C arrays and C
scalars the library reads. torch is never imported here unless a tensor
came in.

Every argument is checked for its dtype kind, its shape and its range
before it is converted to its C type, so nothing wraps, truncates or
rounds silently: an int64 expert id of 2**32 + 14 is refused, not read as
14; a size of 2**32 + 24 is refused, not planned as 24; a float64 load of
1e39 is refused, not turned into +inf. A refused argument raises
EplbInputError (a ValueError) whose message names the argument, and no
output array has been touched.
"""

import operator
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ._errors import EplbInputError

INT_MAX = 2 ** 31 - 1
INT_MIN = -(2 ** 31)
INT64_MAX = 2 ** 63 - 1
UINT64_MAX = 2 ** 64 - 1
FLT_MAX = float(np.finfo(np.float32).max)


def is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(
        x, "detach")


def to_numpy(x: Any, name: str = "argument") -> np.ndarray:
    """A host numpy view or copy of x (a torch tensor on any device, an
    array, nested lists), in its own dtype (bfloat16 widens to float32,
    which holds every bfloat16 exactly)."""
    if is_torch(x):
        x = x.detach().cpu()  # a no-op for host tensors
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()  # numpy has no bfloat16
        return x.numpy()
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise EplbInputError(name, "%s is not an array of numbers: %s"
                             % (name, exc)) from None


def _describe(a: np.ndarray) -> str:
    return "%s of shape %s" % (a.dtype, tuple(a.shape))


def _first(mask: np.ndarray) -> Tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _at(index: Tuple[int, ...]) -> str:
    return "".join("[%d]" % i for i in index)


# ---- scalars -------------------------------------------------------------

def integer(value: Any, name: str, lo: int = INT_MIN,
            hi: int = INT_MAX) -> int:
    """A Python int from an integer scalar (int, numpy integer, 0-d
    integer tensor), within lo..hi (by default a C int's range)."""
    if isinstance(value, (bool, np.bool_)):
        raise EplbInputError(name, "%s must be an integer, not a bool (%r)"
                             % (name, value))
    try:
        v = operator.index(value)
    except TypeError:
        raise EplbInputError(
            name, "%s must be an integer, not %s (%r)"
            % (name, type(value).__name__, value)) from None
    if not lo <= v <= hi:
        raise EplbInputError(name, "%s must be within %d..%d, not %d"
                             % (name, lo, hi, v))
    return v


def size(value: Any, name: str) -> int:
    """A size of the plan (layers, experts, num_replicas, num_groups,
    num_nodes, num_gpus): 0..INT_MAX, as the C API's int holds it (0 is
    left for the library to report as EPLB_ERR_ZERO_SIZE)."""
    return integer(value, name, 0, INT_MAX)


def seed(value: Any, name: str = "seed") -> int:
    """A seed: 0..2**64-1, the C API's uint64_t."""
    return integer(value, name, 0, UINT64_MAX)


def real(value: Any, name: str) -> float:
    """A finite real number that a C float holds without overflow."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise EplbInputError(name, "%s must be a number, not %s (%r)"
                             % (name, type(value).__name__, value))
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise EplbInputError(name, "%s must be a number, not %s (%r)"
                             % (name, type(value).__name__, value)) from None
    if not np.isfinite(v) or abs(v) > FLT_MAX:
        raise EplbInputError(name, "%s must be finite and within a C "
                             "float's range, not %r" % (name, value))
    return v


def share(value: Any, name: str) -> float:
    """A share in [0, 1) as a C float holds it: a nonzero share that
    float32 rounds to 0, or one it rounds up to 1, is refused (it would
    ask for something else than was written)."""
    v = real(value, name)
    f = float(np.float32(v))
    if not 0.0 <= v < 1.0:
        raise EplbInputError(name, "%s must be a share in [0, 1) (0.01: "
                             "1%%), not %r" % (name, value))
    if f >= 1.0:
        raise EplbInputError(name, "%s = %r is 1 as a C float: the "
                             "largest share below 1 is 0.99999994"
                             % (name, value))
    if v != 0.0 and f == 0.0:
        raise EplbInputError(name, "%s = %r is nonzero but 0 as a C float "
                             "(smallest about 1.4e-45)" % (name, value))
    return f


def text(value: Optional[str], name: str) -> Optional[bytes]:
    """A C string (UTF-8, no NUL inside), or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise EplbInputError(name, "%s must be a string or None, not %s"
                             % (name, type(value).__name__))
    if "\0" in value:
        raise EplbInputError(name, "%s must not contain a NUL character"
                             % name)
    return value.encode("utf-8")


# ---- arrays --------------------------------------------------------------

def loads(weight: Any, ndim: int = 2, name: str = "weight") -> np.ndarray:
    """float32, C order, ndim dimensions, from loads of any integer, bool
    or float dtype. Integer counts convert as torch's .float() does (round
    to nearest), as DeepSeek's eplb.py does.

    Refused: other dtypes (strings, objects, complex), float values whose
    float32 is +-inf while they are finite (beyond 3.4028235e38, e.g.
    1e39), and nonzero values whose float32 is 0 (below about 1.4e-45 in
    magnitude, e.g. 1e-50): the plan would silently see other loads.
    Values between that and 1.18e-38 become float32 subnormals, which keep
    their order. NaN, infinite and negative loads are left to the library,
    whose error names the layer and expert."""
    w = to_numpy(weight, name)
    if w.dtype.kind not in "biuf":
        raise EplbInputError(name, "%s must hold numbers (bool, integer or "
                             "float), not %s" % (name, w.dtype))
    if w.ndim != ndim:
        raise EplbInputError(
            name, "%s must have %d dimensions (%s), not shape %s"
            % (name, ndim, "[layers, experts]" if ndim == 2 else
               "[samples, layers, experts]", tuple(w.shape)))
    for axis, n in enumerate(w.shape):
        if n > INT_MAX:
            raise EplbInputError(name, "%s has %d entries on axis %d: more "
                                 "than a C int holds" % (name, n, axis))
    if w.dtype == np.float32:
        return np.ascontiguousarray(w)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        out = np.ascontiguousarray(w, dtype=np.float32)
    if w.dtype.kind == "f" and w.dtype.itemsize > 4:
        over = np.isinf(out) & np.isfinite(w)
        if over.any():
            i = _first(over)
            raise EplbInputError(
                name, "%s%s = %r is beyond float32's range (largest "
                "3.4028235e+38): the library plans on float32 loads; scale "
                "the loads down" % (name, _at(i), float(w[i])))
        under = (out == 0) & (w != 0)
        if under.any():
            i = _first(under)
            raise EplbInputError(
                name, "%s%s = %r is nonzero but becomes 0 in float32 "
                "(smallest about 1.4e-45): the library plans on float32 "
                "loads; scale the loads up" % (name, _at(i), float(w[i])))
    return out


def ids(x: Any, shape: Sequence[int], name: str, num_experts: int,
        empty: bool = True) -> np.ndarray:
    """An int32 C-order copy of a phy2log-style plan of the given shape:
    integer dtype, ids within 0..num_experts-1, or -1 (an empty slot)
    where empty is true."""
    p = to_numpy(x, name)
    if p.dtype.kind not in "iu":
        raise EplbInputError(name, "%s must hold integer expert ids, not %s"
                             % (name, _describe(p)))
    if tuple(p.shape) != tuple(shape):
        raise EplbInputError(name, "%s must have shape %s, not %s"
                             % (name, tuple(shape), tuple(p.shape)))
    lo = -1 if empty else 0
    if p.size:
        bad = (p < lo) | (p > num_experts - 1)
        if bad.any():
            i = _first(bad)
            raise EplbInputError(
                name, "%s%s = %d: expert ids are 0..%d%s" % (
                    name, _at(i), int(p[i]), num_experts - 1,
                    ", or -1 for an empty slot" if empty else ""))
    return np.ascontiguousarray(p, dtype=np.int32)


def counts(x: Any, shape: Sequence[int], name: str,
           hi: int) -> np.ndarray:
    """An int32 C-order copy of logcnt-style counts: integer dtype, the
    given shape, values 0..hi."""
    c = to_numpy(x, name)
    if c.dtype.kind not in "iu":
        raise EplbInputError(name, "%s must hold integer counts, not %s"
                             % (name, _describe(c)))
    if tuple(c.shape) != tuple(shape):
        raise EplbInputError(name, "%s must have shape %s, not %s"
                             % (name, tuple(shape), tuple(c.shape)))
    if c.size:
        bad = (c < 0) | (c > hi)
        if bad.any():
            i = _first(bad)
            raise EplbInputError(name, "%s%s = %d: counts are 0..%d"
                                 % (name, _at(i), int(c[i]), hi))
    return np.ascontiguousarray(c, dtype=np.int32)


def mask(x: Any, num_gpus: int, name: str = "mask",
         dead_value: int = 0) -> np.ndarray:
    """uint8 [num_gpus], 1 for a usable GPU and 0 for a dead one, from a
    bool array or an integer array of 0s and 1s. dead_value=1 reads the
    array the other way round (SGLang's broken_ranks: 1 = broken).
    Strings, floats and other values are refused, and so is a mask that
    leaves no GPU usable."""
    m = to_numpy(x, name)
    if m.dtype.kind not in "biu":
        raise EplbInputError(name, "%s must be boolean or integer (0 or 1 "
                             "per GPU), not %s" % (name, _describe(m)))
    if tuple(m.shape) != (num_gpus,):
        raise EplbInputError(name, "%s must have shape (%d,) (one entry per "
                             "GPU), not %s" % (name, num_gpus,
                                               tuple(m.shape)))
    if m.dtype.kind != "b" and m.size:
        bad = (m != 0) & (m != 1)
        if bad.any():
            i = _first(bad)
            raise EplbInputError(name, "%s%s = %d: entries are 0 or 1"
                                 % (name, _at(i), int(m[i])))
    alive = (m == 0) if dead_value else (m != 0)
    if m.size and not alive.any():
        raise EplbInputError(name, "%s leaves no usable GPU (all %d marked "
                             "dead)" % (name, num_gpus))
    return np.ascontiguousarray(alive, dtype=np.uint8)


def window_sum(x: Any, name: str = "weight") -> np.ndarray:
    """[X, L, E] -> [L, E]: a recording window summed over its first axis;
    integer counts sum exactly (to int64), as torch's integer sum does."""
    w = to_numpy(x, name)
    if w.dtype.kind not in "biuf":
        raise EplbInputError(name, "%s must hold numbers (bool, integer or "
                             "float), not %s" % (name, w.dtype))
    kind = np.int64 if w.dtype.kind in "biu" else w.dtype
    return w.sum(axis=0, dtype=kind)
