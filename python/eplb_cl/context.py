"""Context: one library context (backend, device, built kernels), and the
plan metrics. numpy in, numpy int32 out, in the C API's layout.

Every argument is checked (dtype kind, shape, range) before it is
converted or handed to the library: see eplb_cl._convert. Refused
arguments raise EplbInputError (a ValueError); the library's own refusals
raise EplbError. Either way the caller's output arrays are untouched.
"""

import ctypes
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from . import _convert
from ._errors import EplbInputError, check
from ._lib import Options, Quality, Shape, lib

BACKENDS = {"auto": 0, "reference": 1, "opencl": 2}
POLICIES = {"auto": 0, "hierarchical": 1, "global": 2}


class Plan(NamedTuple):
    """phy2log [L, P], log2phy [L, E, P-E+1] (padded with -1),
    logcnt [L, E]: numpy int32, as eplb_rebalance writes them."""
    phy2log: np.ndarray
    log2phy: np.ndarray
    logcnt: np.ndarray


class PlanQuality(NamedTuple):
    """eplb_plan_quality's figures (doc/ALGORITHM.md, the metrics)."""
    balancedness_mean: float
    balancedness_worst: float
    worst_layer: int
    bound_mean: float
    share_of_bound: float
    bound_is_weak: bool


def _choice(table: Dict[str, int], value: Any, what: str) -> int:
    if not isinstance(value, str) or value not in table:
        raise EplbInputError(what, "%s must be one of %s, not %r"
                             % (what, ", ".join(table), value))
    return table[value]


def _shape(layers: Any, experts: Any, num_replicas: Any, num_groups: Any,
           num_nodes: Any, num_gpus: Any) -> Shape:
    """The C shape, each size checked against the C int first."""
    return Shape(_convert.size(layers, "layers"),
                 _convert.size(experts, "experts"),
                 _convert.size(num_replicas, "num_replicas"),
                 _convert.size(num_groups, "num_groups"),
                 _convert.size(num_nodes, "num_nodes"),
                 _convert.size(num_gpus, "num_gpus"))


def _sizes(shape: Shape) -> List[int]:
    n = [ctypes.c_size_t() for _ in range(3)]
    check(lib().eplb_plan_sizes(ctypes.byref(shape), *map(ctypes.byref, n)))
    return [v.value for v in n]


def _options(backend: str = "auto", policy: str = "auto",
             candidates: Optional[int] = None,
             swap_rounds: Optional[int] = None,
             seed: Optional[int] = None, device: Optional[str] = None,
             tolerance: Optional[float] = None,
             noise: Optional[float] = None,
             platform: Optional[str] = None,
             device_type: Optional[str] = None,
             enforce_device: bool = False, use_clblast: bool = False,
             distinct_per_gpu: bool = False) -> Options:
    """The C options for these arguments."""
    # Every option is checked before any is written to the C struct:
    # ctypes would wrap 2**32 + 4 candidates to 4 and 2**64 to seed 0.
    backend_id = _choice(BACKENDS, backend, "backend")
    policy_id = _choice(POLICIES, policy, "policy")
    ints: Dict[str, int] = {}
    for name, number in (("candidates", candidates),
                         ("swap_rounds", swap_rounds)):
        if number is not None:
            ints[name] = _convert.integer(number, name)
    if seed is not None:
        ints["seed"] = _convert.seed(seed)
    floats: Dict[str, float] = {}
    for name, real in (("tolerance", tolerance), ("noise", noise)):
        if real is not None:
            floats[name] = _convert.real(real, name)
    strings: Dict[str, Optional[bytes]] = {
        name: _convert.text(text, name)
        for name, text in (("platform", platform), ("device", device),
                           ("device_type", device_type))}
    L = lib()
    opts = Options()
    L.eplb_options_default(ctypes.byref(opts))
    opts.backend = backend_id
    opts.policy = policy_id
    for name, i in ints.items():
        setattr(opts, name, i)
    for name, f in floats.items():
        setattr(opts, name, f)
    for name, t in strings.items():
        setattr(opts, name, t)
    opts.enforce_device = int(bool(enforce_device))
    opts.use_clblast = int(bool(use_clblast))
    opts.distinct_per_gpu = int(bool(distinct_per_gpu))
    return opts


class Context:
    """A libeplb-cl context. Options left None keep the library's defaults
    (64 candidates, noise 0.2, 20 swap rounds, seed 0, tolerance 0).
    candidates=1, swap_rounds=0 is DeepSeek's algorithm with stable sorts
    (eplb_cl.deepseek's docstring says what equality with eplb.py means).

    One context per thread: a call while another thread is inside this
    context raises RuntimeError instead of corrupting it.
    """

    def __init__(self, backend: str = "auto", **options: Any) -> None:
        """backend and the options of _options (policy, candidates,
        swap_rounds, seed, device, tolerance, noise, platform,
        device_type, enforce_device, use_clblast, distinct_per_gpu)."""
        self._ctx: Optional[int] = None
        self._backend_option = backend
        opts = _options(backend, **options)
        L = lib()
        handle = ctypes.c_void_p()
        check(L.eplb_context_create(ctypes.byref(handle), ctypes.byref(opts)))
        self._ctx = handle.value
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        """"reference" or "opencl": the backend that runs."""
        return lib().eplb_context_backend(self._handle()).decode()

    @property
    def device(self) -> str:
        """"platform / device" for OpenCL, "host CPU" for reference."""
        return lib().eplb_context_device(self._handle()).decode(
            "utf-8", "replace")

    @property
    def note(self) -> str:
        """Choices made for the caller (fallbacks), "" if none."""
        return lib().eplb_context_note(self._handle()).decode(
            "utf-8", "replace")

    def set_options(self, **options: Any) -> None:
        """Changes the options of this live context for the calls that
        follow (eplb_context_set_options): no new context, and on OpenCL
        only the kernels an option needs are built again. The backend
        stays the one the context was made with; the device filters are
        not read."""
        opts = _options(self._backend_option, **options)
        check(lib().eplb_context_set_options(self._handle(),
                                             ctypes.byref(opts)))

    def _handle(self) -> int:
        if self._ctx is None:
            raise ValueError("the context is closed")
        return self._ctx

    def rebalance(self, weight: Any, num_replicas: int, num_groups: int,
                  num_nodes: int, num_gpus: int, current: Any = None,
                  mask: Any = None, out: Optional[Plan] = None) -> Plan:
        """The plan for weight [L, E] (numpy, torch or lists of any bool,
        integer or float dtype; finite and >= 0) as numpy int32 arrays.

        current [L, P] (integer dtype): the plan in service (vLLM's
        old_global_expert_indices; ids 0..E-1, -1 for an empty slot;
        every expert in at least one slot): the new plan then needs as
        few expert copies as the search finds. mask [M] (bool, or integer
        0/1): 1 for a usable GPU, 0 for a dead one (SGLang's active
        ranks); dead GPUs' slots hold -1. out: a Plan of writable int32
        C-order arrays of the plan's shapes to write into instead of new
        ones (no allocation).

        Sizes must be integers within a C int; loads in float64 must fit
        float32 (see eplb_cl._convert.loads). A refused argument raises
        EplbInputError, a refusal of the library EplbError; out is left
        untouched by either.
        """
        w = _convert.loads(weight)
        shape = _shape(w.shape[0], w.shape[1], num_replicas, num_groups,
                       num_nodes, num_gpus)
        L, E, P = shape.layers, shape.experts, shape.num_replicas
        cur = m = None
        if current is not None:
            cur = _convert.ids(current, (L, P), "current", E)
        if mask is not None:
            m = _convert.mask(mask, shape.num_gpus)
        _sizes(shape)  # the library's shape checks, before out is read
        shapes = ((L, P), (L, E, P - E + 1), (L, E))
        if out is None:
            out = Plan(*(np.empty(s, np.int32) for s in shapes))
        else:
            if not isinstance(out, tuple) or len(out) != 3:
                raise EplbInputError("out", "out must be a Plan of three "
                                     "arrays")
            for a, s, name in zip(out, shapes, Plan._fields):
                if (not isinstance(a, np.ndarray) or a.shape != s
                        or a.dtype != np.int32 or not a.flags.c_contiguous
                        or not a.flags.writeable):
                    raise EplbInputError(
                        "out", "out.%s must be a writable C-order int32 "
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

    def scratch(self, layers: int, experts: int, num_replicas: int) -> Plan:
        """A Plan of arrays this context keeps for rebalance(out=...) by
        callers that copy the plan anyway (the DeepSeek, vLLM and SGLang
        drop-ins): a fresh 2 MB log2phy costs page faults on every call.
        The next call with the same sizes overwrites them."""
        key = (layers, experts, num_replicas)
        if getattr(self, "_scratch", (None,))[0] != key:
            P, E = num_replicas, experts
            self._scratch = (key, Plan(
                np.empty((layers, P), np.int32),
                np.empty((layers, E, max(P - E + 1, 0)), np.int32),
                np.empty((layers, E), np.int32)))
        return self._scratch[1]

    def close(self) -> None:
        """Releases the context now (else when garbage-collected)."""
        if getattr(self, "_ctx", None) is not None:
            lib().eplb_context_destroy(self._ctx)
            self._ctx = None

    def __enter__(self) -> "Context":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone
            pass

    def __repr__(self) -> str:
        if self._ctx is None:
            return "<eplb_cl.Context closed>"
        return "<eplb_cl.Context %s on %s>" % (self.backend, self.device)


def quality(weight: Any, phy2log: Any, logcnt: Any, num_groups: int,
            num_nodes: int, num_gpus: int,
            policy: str = "auto") -> PlanQuality:
    """How balanced a plan is on weight [L, E] (which need not be the load
    it was made from): eplb_plan_quality's figures. phy2log [L, P] and
    logcnt [L, E] are integer arrays (ids 0..E-1 or -1, counts 0..P)."""
    w = _convert.loads(weight)
    p2l = _convert.to_numpy(phy2log, "phy2log")
    if p2l.ndim != 2:
        raise EplbInputError("phy2log", "phy2log must be [layers, "
                             "num_replicas], not shape %s"
                             % (tuple(p2l.shape),))
    policy_id = _choice(POLICIES, policy, "policy")
    shape = _shape(w.shape[0], w.shape[1], p2l.shape[1], num_groups,
                   num_nodes, num_gpus)
    L, E, P = shape.layers, shape.experts, shape.num_replicas
    p2l = _convert.ids(p2l, (L, P), "phy2log", E)
    cnt = _convert.counts(logcnt, (L, E), "logcnt", P)
    q = Quality.new()
    check(lib().eplb_plan_quality(
        ctypes.byref(shape), policy_id, w.ctypes.data, p2l.ctypes.data,
        cnt.ctypes.data, ctypes.byref(q)))
    return PlanQuality(q.balancedness_mean, q.balancedness_worst,
                       q.worst_layer, q.bound_mean, q.share_of_bound,
                       bool(q.bound_is_weak))


def copies(current: Any, next: Any, num_experts: int,
           num_gpus: int) -> Tuple[int, np.ndarray]:
    """Expert copies that moving from plan current to plan next ([L, P]
    each, integer ids 0..num_experts-1, -1 for an empty slot) makes the
    engine perform: (total, per_gpu numpy int64 [num_gpus])."""
    cur = _convert.to_numpy(current, "current")
    if cur.ndim != 2:
        raise EplbInputError("current", "current must be [layers, "
                             "num_replicas], not shape %s"
                             % (tuple(cur.shape),))
    shape = _shape(cur.shape[0], num_experts, cur.shape[1], 1, 1, num_gpus)
    L, E, P = shape.layers, shape.experts, shape.num_replicas
    cur = _convert.ids(cur, (L, P), "current", E)
    nxt = _convert.ids(next, (L, P), "next", E)
    per_gpu = np.zeros(shape.num_gpus, dtype=np.dtype("l"))
    total = ctypes.c_long()
    check(lib().eplb_copies(ctypes.byref(shape), cur.ctypes.data,
                            nxt.ctypes.data, per_gpu.ctypes.data,
                            ctypes.byref(total)))
    return total.value, per_gpu.astype(np.int64)
