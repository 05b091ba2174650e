"""Turning numpy arrays, torch tensors and nested lists into the C arrays
the library reads. torch is never imported here unless a tensor came in."""

import numpy as np


def is_torch(x):
    return type(x).__module__.split(".")[0] == "torch" and hasattr(
        x, "detach")


def to_numpy(x):
    """A host numpy view or copy of x (a torch tensor on any device)."""
    if is_torch(x):
        x = x.detach().cpu()  # a no-op for host tensors
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()  # numpy has no bfloat16
        return x.numpy()
    return np.asarray(x)


def loads(weight, ndim=2):
    """float32, C order, ndim dimensions; integer counts convert the way
    torch's .float() does (round to nearest), as DeepSeek's eplb.py does."""
    w = to_numpy(weight)
    if w.ndim != ndim:
        raise ValueError("weight must have %d dimensions ([layers, experts]"
                         "), not shape %s" % (ndim, tuple(w.shape)))
    if w.dtype.kind not in "biuf":
        raise TypeError("weight must hold numbers, not %s" % w.dtype)
    return np.ascontiguousarray(w, dtype=np.float32)


def plan(x, shape, name):
    """An int32 C-order copy of a phy2log-style plan of the given shape."""
    p = to_numpy(x)
    if tuple(p.shape) != tuple(shape):
        raise ValueError("%s must have shape %s, not %s"
                         % (name, tuple(shape), tuple(p.shape)))
    if p.dtype.kind not in "iu":
        raise TypeError("%s must hold integer expert ids, not %s"
                        % (name, p.dtype))
    return np.ascontiguousarray(p, dtype=np.int32)


def mask(x, num_gpus):
    """uint8 [num_gpus]: 1 for a usable GPU, 0 for a dead one."""
    m = to_numpy(x)
    if m.shape != (num_gpus,):
        raise ValueError("mask must have shape (%d,) (one entry per GPU), "
                         "not %s" % (num_gpus, tuple(m.shape)))
    return np.ascontiguousarray(m != 0, dtype=np.uint8)


def window_sum(x):
    """[X, L, E] -> [L, E]: a recording window summed over its first axis;
    integer counts sum exactly (to int64), as torch's integer sum does."""
    w = to_numpy(x)
    kind = np.int64 if w.dtype.kind in "biu" else w.dtype
    return w.sum(axis=0, dtype=kind)
