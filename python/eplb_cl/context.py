"""Context: one library context (backend, device, built kernels), and the
plan metrics. numpy in, numpy int32 out, in the C API's layout."""

import collections
import ctypes
import threading

import numpy as np

from . import _convert
from ._errors import check
from ._lib import Options, Quality, Shape, lib

BACKENDS = {"auto": 0, "reference": 1, "opencl": 2}
POLICIES = {"auto": 0, "hierarchical": 1, "global": 2}

Plan = collections.namedtuple("Plan", "phy2log log2phy logcnt")
Plan.__doc__ = """phy2log [L, P], log2phy [L, E, P-E+1] (padded with -1),
logcnt [L, E]: numpy int32, as eplb_rebalance writes them."""

PlanQuality = collections.namedtuple(
    "PlanQuality", "balancedness_mean balancedness_worst worst_layer "
    "bound_mean share_of_bound bound_is_weak")


def _choice(table, value, what):
    try:
        return table[value]
    except KeyError:
        raise ValueError("%s must be one of %s, not %r"
                         % (what, ", ".join(table), value)) from None


def _text(s):
    return None if s is None else s.encode("utf-8")


def _shape(layers, experts, num_replicas, num_groups, num_nodes, num_gpus):
    return Shape(int(layers), int(experts), int(num_replicas),
                 int(num_groups), int(num_nodes), int(num_gpus))


def _sizes(shape):
    n = [ctypes.c_size_t() for _ in range(3)]
    check(lib().eplb_plan_sizes(ctypes.byref(shape), *map(ctypes.byref, n)))
    return [v.value for v in n]


class Context:
    """A libeplb-cl context. Options left None keep the library's defaults
    (64 candidates, noise 0.2, 20 swap rounds, seed 0, tolerance 0).
    candidates=1, swap_rounds=0 is DeepSeek's algorithm, bit for bit.

    One context per thread: a call while another thread is inside this
    context raises RuntimeError instead of corrupting it.
    """

    def __init__(self, backend="auto", policy="auto", candidates=None,
                 swap_rounds=None, seed=None, device=None, tolerance=None,
                 noise=None, platform=None, device_type=None,
                 enforce_device=False, use_clblast=False,
                 distinct_per_gpu=False):
        self._ctx = None
        L = lib()
        opts = Options()
        L.eplb_options_default(ctypes.byref(opts))
        opts.backend = _choice(BACKENDS, backend, "backend")
        opts.policy = _choice(POLICIES, policy, "policy")
        for name, value in (("candidates", candidates),
                            ("swap_rounds", swap_rounds), ("seed", seed),
                            ("tolerance", tolerance), ("noise", noise)):
            if value is not None:
                setattr(opts, name, value)
        opts.platform = _text(platform)
        opts.device = _text(device)
        opts.device_type = _text(device_type)
        opts.enforce_device = int(bool(enforce_device))
        opts.use_clblast = int(bool(use_clblast))
        opts.distinct_per_gpu = int(bool(distinct_per_gpu))
        handle = ctypes.c_void_p()
        check(L.eplb_context_create(ctypes.byref(handle), ctypes.byref(opts)))
        self._ctx = handle.value
        self._lock = threading.Lock()

    @property
    def backend(self):
        """"reference" or "opencl": the backend that runs."""
        return lib().eplb_context_backend(self._handle()).decode()

    @property
    def device(self):
        """"platform / device" for OpenCL, "host CPU" for reference."""
        return lib().eplb_context_device(self._handle()).decode(
            "utf-8", "replace")

    @property
    def note(self):
        """Choices made for the caller (fallbacks), "" if none."""
        return lib().eplb_context_note(self._handle()).decode(
            "utf-8", "replace")

    def _handle(self):
        if self._ctx is None:
            raise ValueError("the context is closed")
        return self._ctx

    def rebalance(self, weight, num_replicas, num_groups, num_nodes,
                  num_gpus, current=None, mask=None, out=None):
        """The plan for weight [L, E] (numpy, torch or lists; finite and
        >= 0) as numpy int32 arrays.

        current [L, P]: the plan in service (vLLM's
        old_global_expert_indices; -1 for an empty slot): the new plan then
        needs as few expert copies as the search finds. mask [M]: nonzero
        for a usable GPU, 0 for a dead one (SGLang's active ranks); dead
        GPUs' slots hold -1. out: a Plan of int32 C-order arrays of the
        plan's shapes to write into instead of new ones (no allocation).
        """
        w = _convert.loads(weight)
        shape = _shape(w.shape[0], w.shape[1], num_replicas, num_groups,
                       num_nodes, num_gpus)
        n_p2l, n_l2p, n_cnt = _sizes(shape)
        cur = m = None
        if current is not None:
            cur = _convert.plan(current, (shape.layers, shape.num_replicas),
                                "current")
        if mask is not None:
            m = _convert.mask(mask, shape.num_gpus)
        L, E, P = shape.layers, shape.experts, shape.num_replicas
        shapes = ((L, P), (L, E, P - E + 1), (L, E))
        if out is None:
            out = Plan(*(np.empty(s, np.int32) for s in shapes))
        for a, s, name in zip(out, shapes, Plan._fields):
            if (a.shape != s or a.dtype != np.int32
                    or not a.flags.c_contiguous or not a.flags.writeable):
                raise ValueError("out.%s must be a writable C-order int32 "
                                 "array of shape %s" % (name, s))
        phy2log, log2phy, logcnt = out
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this Context is in use by another thread: "
                               "use one Context per thread")
        try:
            ctx = self._handle()
            if cur is None and m is None:
                rc = lib().eplb_rebalance(
                    ctx, ctypes.byref(shape), w.ctypes.data,
                    phy2log.ctypes.data, log2phy.ctypes.data,
                    logcnt.ctypes.data)
            else:
                rc = lib().eplb_rebalance_from(
                    ctx, ctypes.byref(shape), w.ctypes.data,
                    None if cur is None else cur.ctypes.data,
                    None if m is None else m.ctypes.data,
                    phy2log.ctypes.data, log2phy.ctypes.data,
                    logcnt.ctypes.data)
            check(rc)
        finally:
            self._lock.release()
        return Plan(phy2log, log2phy, logcnt)

    def scratch(self, layers, experts, num_replicas):
        """A Plan of arrays this context keeps for rebalance(out=...) by
        callers that copy the plan anyway (the DeepSeek, vLLM and SGLang
        drop-ins): a fresh 2 MB log2phy costs page faults on every call.
        The next call with the same sizes overwrites them."""
        key = (layers, experts, num_replicas)
        if getattr(self, "_scratch", (None,))[0] != key:
            P, E = num_replicas, experts
            self._scratch = (key, Plan(
                np.empty((layers, P), np.int32),
                np.empty((layers, E, P - E + 1), np.int32),
                np.empty((layers, E), np.int32)))
        return self._scratch[1]

    def close(self):
        """Releases the context now (else when garbage-collected)."""
        if getattr(self, "_ctx", None) is not None:
            lib().eplb_context_destroy(self._ctx)
            self._ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone
            pass

    def __repr__(self):
        if self._ctx is None:
            return "<eplb_cl.Context closed>"
        return "<eplb_cl.Context %s on %s>" % (self.backend, self.device)


def quality(weight, phy2log, logcnt, num_groups, num_nodes, num_gpus,
            policy="auto"):
    """How balanced a plan is on weight [L, E] (which need not be the load
    it was made from): eplb_plan_quality's figures."""
    w = _convert.loads(weight)
    p2l = _convert.to_numpy(phy2log)
    if p2l.ndim != 2:
        raise ValueError("phy2log must be [layers, num_replicas]")
    shape = _shape(w.shape[0], w.shape[1], p2l.shape[1], num_groups,
                   num_nodes, num_gpus)
    p2l = _convert.plan(p2l, (shape.layers, shape.num_replicas), "phy2log")
    cnt = _convert.plan(logcnt, (shape.layers, shape.experts), "logcnt")
    q = Quality.new()
    check(lib().eplb_plan_quality(
        ctypes.byref(shape), _choice(POLICIES, policy, "policy"),
        w.ctypes.data, p2l.ctypes.data, cnt.ctypes.data, ctypes.byref(q)))
    return PlanQuality(q.balancedness_mean, q.balancedness_worst,
                       q.worst_layer, q.bound_mean, q.share_of_bound,
                       bool(q.bound_is_weak))


def copies(current, next, num_experts, num_gpus):
    """Expert copies that moving from plan current to plan next ([L, P]
    each, -1 for an empty slot) makes the engine perform: (total, per_gpu
    numpy int64 [num_gpus])."""
    cur = _convert.to_numpy(current)
    if cur.ndim != 2:
        raise ValueError("current must be [layers, num_replicas]")
    shape = _shape(cur.shape[0], num_experts, cur.shape[1], 1, 1, num_gpus)
    cur = _convert.plan(cur, (shape.layers, shape.num_replicas), "current")
    nxt = _convert.plan(next, (shape.layers, shape.num_replicas), "next")
    per_gpu = np.zeros(shape.num_gpus, dtype=np.dtype("l"))
    total = ctypes.c_long()
    check(lib().eplb_copies(ctypes.byref(shape), cur.ctypes.data,
                            nxt.ctypes.data, per_gpu.ctypes.data,
                            ctypes.byref(total)))
    return total.value, per_gpu.astype(np.int64)
