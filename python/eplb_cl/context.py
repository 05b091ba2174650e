"""Context: one library context (backend, device, built kernels), and the
plan metrics. numpy in, numpy int32 out, in the C API's layout.

Every argument is checked (dtype kind, shape, range) before it is
converted or handed to the library: see eplb_cl._convert. Refused
arguments raise EplbInputError (a ValueError); the library's own refusals
raise EplbError. Either way the caller's output arrays are untouched.
"""

import ctypes
import threading
from dataclasses import dataclass
from typing import (Any, Dict, List, Literal, NamedTuple, Optional, Tuple,
                    Union, overload)

import numpy as np

from . import _convert
from ._errors import EplbInputError, check
from ._lib import (FORECAST_KEPT, FORECASTS, MAX_LOOKBACK, MAX_WINDOWS,
                   MIN_GAIN_DEFAULT, CSchedule, Options, Quality, Request,
                   Shape, Stage, lib)

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


# A schedule's stage records as numpy reads them: eplb_stage's layout
# (copies int64, max_copies_per_gpu int32, objective and balancedness
# float64), aligned as C aligns it.
STAGE_DTYPE = np.dtype(Stage)


@dataclass(eq=False)
class Schedule:
    """A re-plan as an ordered migration (eplb_schedule): what
    Context.rebalance(..., schedule=True) returns beside the plan.

    stage_of_slot [L, P] int32: the stage at which slot s of layer l takes
    its expert of the plan returned (0: unchanged); the plan after stage k
    holds the new expert where 0 < stage <= k, else the current one
    (phy2log_after(k)). stages: one record per stage k = 0..num_stages
    (0: the plan in service), a numpy structured array of STAGE_DTYPE
    with fields copies, max_copies_per_gpu, objective (the sum over
    layers of the largest GPU load) and balancedness (the mean over
    layers of mean / largest GPU load), as the plan stands after the
    stage. layer_gain [L] float64 and layer_copies [L] int32: each
    layer's whole re-plan (before min_gain and the budgets), its largest
    GPU load removed and its copies; layer_order [L] int32: the layers by
    gain per copy, best first, layers that do not change last. copies:
    in all stages; objective_before / objective_after: the plan in
    service's (live GPUs) and the plan returned's. current and phy2log
    [L, P] int32: copies of the plan in service and of the plan
    returned."""
    stage_of_slot: np.ndarray
    stages: np.ndarray
    layer_gain: np.ndarray
    layer_copies: np.ndarray
    layer_order: np.ndarray
    num_stages: int
    copies: int
    objective_before: float
    objective_after: float
    current: np.ndarray
    phy2log: np.ndarray

    def phy2log_after(self, stage: int) -> np.ndarray:
        """phy2log [L, P] int32 of the plan after `stage` (0: the plan in
        service, num_stages: the plan returned)."""
        k = _convert.integer(stage, "stage", 0, self.num_stages)
        moved = (self.stage_of_slot > 0) & (self.stage_of_slot <= k)
        return np.where(moved, self.phy2log, self.current).astype(np.int32)


def _migration(max_copies_per_gpu: Any, max_copies: Any,
               stage_copies_per_gpu: Any, min_gain: Any,
               schedule: Any) -> Optional[Dict[str, Any]]:
    """The migration fields of the C request for these arguments, each
    checked against its C type first; None when they ask for nothing
    beyond the re-plan (the library then does exactly that)."""
    if not isinstance(schedule, (bool, np.bool_)):
        raise EplbInputError("schedule", "schedule must be True or False, "
                             "not %s (%r)" % (type(schedule).__name__,
                                              schedule))
    fields: Dict[str, Any] = {}
    if max_copies_per_gpu is not None:
        fields["max_copies_per_gpu"] = _convert.integer(
            max_copies_per_gpu, "max_copies_per_gpu", -1, _convert.INT_MAX)
    if max_copies is not None:
        fields["max_copies"] = _convert.integer(
            max_copies, "max_copies", -1, _convert.INT64_MAX)
    if stage_copies_per_gpu is not None:
        fields["stage_copies_per_gpu"] = _convert.integer(
            stage_copies_per_gpu, "stage_copies_per_gpu", 0,
            _convert.INT_MAX)
    if min_gain is not None:
        fields["min_gain"] = _convert.share(min_gain, "min_gain")
    asked = (fields.get("max_copies_per_gpu", -1) >= 0
             or fields.get("max_copies", -1) >= 0
             or fields.get("stage_copies_per_gpu", 0) > 0
             or fields.get("min_gain", MIN_GAIN_DEFAULT) != MIN_GAIN_DEFAULT
             or bool(schedule))
    return fields if asked else None


# The names of forecast_choice's values (eplb_forecast), by value.
FORECAST_NAMES = {v: k for k, v in FORECASTS.items()}
FORECAST_NAMES[FORECAST_KEPT] = "kept"


def _forecast(forecast: Any, forecast_k: Any, forecast_alpha: Any,
              forecast_lookback: Any) -> Dict[str, Any]:
    """The forecast fields of the C request for these arguments, each
    checked against its C type and range first (None: the default)."""
    fields: Dict[str, Any] = {}
    if forecast is not None:
        fields["forecast"] = _choice(FORECASTS, forecast, "forecast")
    if forecast_k is not None:
        fields["forecast_k"] = _convert.integer(forecast_k, "forecast_k", 1,
                                                _convert.INT_MAX)
    if forecast_alpha is not None:
        a = _convert.real(forecast_alpha, "forecast_alpha")
        if not 0.0 < float(np.float32(a)) <= 1.0:
            raise EplbInputError("forecast_alpha", "forecast_alpha must be "
                                 "a weight in (0, 1], not %r"
                                 % (forecast_alpha,))
        fields["forecast_alpha"] = a
    if forecast_lookback is not None:
        fields["forecast_lookback"] = _convert.integer(
            forecast_lookback, "forecast_lookback", 1, MAX_LOOKBACK)
    return fields


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
             distinct_per_gpu: bool = False,
             host_threads: Optional[int] = None) -> Options:
    """The C options for these arguments."""
    # Every option is checked before any is written to the C struct:
    # ctypes would wrap 2**32 + 4 candidates to 4 and 2**64 to seed 0.
    backend_id = _choice(BACKENDS, backend, "backend")
    policy_id = _choice(POLICIES, policy, "policy")
    ints: Dict[str, int] = {}
    for name, number in (("candidates", candidates),
                         ("swap_rounds", swap_rounds),
                         ("host_threads", host_threads)):
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


def _schedule_arrays(layers: int, slots: int) -> Dict[str, np.ndarray]:
    """The arrays a schedule of this size is written into: stages holds
    layers * slots + 1 records (each stage copies at least one expert),
    capped at a C int."""
    records = min(layers * slots + 1, _convert.INT_MAX)
    return {"stage_of_slot": np.empty((layers, slots), np.int32),
            "stages": np.empty(records, STAGE_DTYPE),
            "layer_gain": np.empty(layers, np.float64),
            "layer_copies": np.empty(layers, np.int32),
            "layer_order": np.empty(layers, np.int32)}


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
        device_type, enforce_device, use_clblast, distinct_per_gpu,
        host_threads: threads for the host's work, the re-plan's layers
        among it; 0 one per CPU, 1 the calling thread; the same plan for
        any number)."""
        self._ctx: Optional[int] = None
        self._backend_option = backend
        # each layer's estimator in the last plan made from a window of
        # samples (Context.rebalance's docstring)
        self.last_forecast: Optional[List[str]] = None
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

    @overload
    def rebalance(self, weight: Any, num_replicas: int, num_groups: int,
                  num_nodes: int, num_gpus: int, current: Any = None,
                  mask: Any = None, out: Optional[Plan] = None, *,
                  max_copies_per_gpu: Optional[int] = None,
                  max_copies: Optional[int] = None,
                  stage_copies_per_gpu: Optional[int] = None,
                  min_gain: Optional[float] = None,
                  schedule: Literal[False] = False,
                  forecast: Optional[str] = None,
                  forecast_k: Optional[int] = None,
                  forecast_alpha: Optional[float] = None,
                  forecast_lookback: Optional[int] = None) -> Plan: ...

    @overload
    def rebalance(self, weight: Any, num_replicas: int, num_groups: int,
                  num_nodes: int, num_gpus: int, current: Any = None,
                  mask: Any = None, out: Optional[Plan] = None, *,
                  max_copies_per_gpu: Optional[int] = None,
                  max_copies: Optional[int] = None,
                  stage_copies_per_gpu: Optional[int] = None,
                  min_gain: Optional[float] = None,
                  schedule: Literal[True],
                  forecast: Optional[str] = None,
                  forecast_k: Optional[int] = None,
                  forecast_alpha: Optional[float] = None,
                  forecast_lookback: Optional[int] = None
                  ) -> Tuple[Plan, Schedule]: ...

    @overload
    def rebalance(self, weight: Any, num_replicas: int, num_groups: int,
                  num_nodes: int, num_gpus: int, current: Any = None,
                  mask: Any = None, out: Optional[Plan] = None, *,
                  max_copies_per_gpu: Optional[int] = None,
                  max_copies: Optional[int] = None,
                  stage_copies_per_gpu: Optional[int] = None,
                  min_gain: Optional[float] = None,
                  schedule: bool,
                  forecast: Optional[str] = None,
                  forecast_k: Optional[int] = None,
                  forecast_alpha: Optional[float] = None,
                  forecast_lookback: Optional[int] = None
                  ) -> Union[Plan, Tuple[Plan, Schedule]]: ...

    def rebalance(self, weight: Any, num_replicas: int, num_groups: int,
                  num_nodes: int, num_gpus: int, current: Any = None,
                  mask: Any = None, out: Optional[Plan] = None, *,
                  max_copies_per_gpu: Optional[int] = None,
                  max_copies: Optional[int] = None,
                  stage_copies_per_gpu: Optional[int] = None,
                  min_gain: Optional[float] = None,
                  schedule: bool = False,
                  forecast: Optional[str] = None,
                  forecast_k: Optional[int] = None,
                  forecast_alpha: Optional[float] = None,
                  forecast_lookback: Optional[int] = None
                  ) -> Union[Plan, Tuple[Plan, Schedule]]:
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

        The migration (with current only; eplb_request in eplb_cl.h): a
        budget of max_copies_per_gpu expert copies per GPU and max_copies
        in all (-1 or None: none; 0: nothing moves) keeps the re-plan's
        changes that gain most per copy while the budget allows;
        stage_copies_per_gpu cuts them into stages of at most that many
        copies per GPU (0 or None: one stage); min_gain (a share in
        [0, 1); None: MIN_GAIN_DEFAULT) keeps the placement of a layer
        whose re-plan would lower its largest GPU load by less than that
        share (alone it costs nothing beyond the re-plan). A budget,
        stages or schedule=True make the plan the schedule's last
        stage: each layer takes the re-plan's changes
        while they lower its largest GPU load, so a layer may keep a few
        of the re-plan's changes back (fewer copies, no higher load) and
        an empty slot (-1) that no change fills stays empty.
        schedule=True returns (plan, Schedule) instead of the plan alone:
        the stage of every slot, a record per stage and the layers' gains
        and order.

        The next window (eplb_request's windows): weight [X, L, E], X
        recent samples oldest first (SGLang's window axis, vLLM's
        expert_load_window in time order), is planned for the window that
        comes: the library forecasts its loads with `forecast` ("auto",
        the library's default "adaptive"; "last", "mean", "ewma",
        "trend", "robust"), forecast_k (mean, trend: the newest K),
        forecast_alpha (ewma: the newest sample's weight in (0, 1]) and
        forecast_lookback (adaptive, robust: samples scored; default
        adaptive 1, robust 2). No sample
        may be all zero. self.last_forecast then holds each layer's
        estimator (a list of names; "kept": the robust estimator kept the
        layer's current placement).

        Sizes must be integers within a C int; loads in float64 must fit
        float32 (see eplb_cl._convert.loads); the migration's integers
        must be true integers within their C types (no bool, float or
        string) and min_gain a number in [0, 1). A refused argument
        raises EplbInputError, a refusal of the library EplbError; out is
        left untouched by either.
        """
        fc = _forecast(forecast, forecast_k, forecast_alpha,
                       forecast_lookback)
        raw = _convert.to_numpy(weight, "weight")
        windowed = raw.ndim == 3
        if fc and not windowed:
            raise EplbInputError(
                "forecast", "forecast, forecast_k, forecast_alpha and "
                "forecast_lookback forecast from a window of samples: pass "
                "weight as [samples, layers, experts]")
        w = _convert.loads(weight, 3 if windowed else 2)
        if windowed and not 1 <= w.shape[0] <= MAX_WINDOWS:
            raise EplbInputError("weight", "weight has %d samples: give "
                                 "1..%d" % (w.shape[0], MAX_WINDOWS))
        lay, exp = (w.shape[1], w.shape[2]) if windowed else w.shape
        shape = _shape(lay, exp, num_replicas, num_groups,
                       num_nodes, num_gpus)
        L, E, P = shape.layers, shape.experts, shape.num_replicas
        cur = m = None
        if current is not None:
            cur = _convert.ids(current, (L, P), "current", E)
        if mask is not None:
            m = _convert.mask(mask, shape.num_gpus)
        migration = _migration(max_copies_per_gpu, max_copies,
                               stage_copies_per_gpu, min_gain, schedule)
        if migration is not None and cur is None:
            raise EplbInputError(
                "current", "the budgets, stages, min_gain and the schedule "
                "re-plan from the plan in service: pass current")
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
        req = sc = None
        choice = None
        if windowed:
            req = Request.new()
            req.windows = w.ctypes.data
            req.num_windows = w.shape[0]
            for name, value in fc.items():
                setattr(req, name, value)
            choice = np.empty(L, np.int32)
            req.forecast_choice = choice.ctypes.data
            req.current_phy2log = None if cur is None else cur.ctypes.data
            req.gpu_mask = None if m is None else m.ctypes.data
        if migration is not None and cur is not None:
            if req is None:
                req = Request.new()
            for name, value in migration.items():
                setattr(req, name, value)
            req.current_phy2log = cur.ctypes.data
            req.gpu_mask = None if m is None else m.ctypes.data
            if schedule:
                # Every stage copies at least one expert: the slots (+ the
                # plan in service's record) bound the records.
                bufs = _schedule_arrays(L, P)
                sc = CSchedule.new()
                sc.stage_of_slot = bufs["stage_of_slot"].ctypes.data
                sc.stages = bufs["stages"].ctypes.data
                sc.max_stages = len(bufs["stages"])
                sc.layer_gain = bufs["layer_gain"].ctypes.data
                sc.layer_copies = bufs["layer_copies"].ctypes.data
                sc.layer_order = bufs["layer_order"].ctypes.data
                req.schedule = ctypes.addressof(sc)
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this Context is in use by another thread: "
                               "use one Context per thread")
        try:
            ctx = self._handle()
            if req is not None:
                rc = lib().eplb_plan(
                    ctx, ctypes.byref(shape),
                    None if windowed else w.ctypes.data,
                    ctypes.byref(req), phy2log.ctypes.data,
                    log2phy.ctypes.data, logcnt.ctypes.data)
            elif cur is None and m is None:
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
        plan = Plan(phy2log, log2phy, logcnt)
        if choice is not None:
            self.last_forecast = [FORECAST_NAMES.get(int(c), "?")
                                  for c in choice]
        if sc is None or cur is None:
            return plan
        n = int(sc.num_stages)
        return plan, Schedule(
            stage_of_slot=bufs["stage_of_slot"],
            stages=bufs["stages"][:n + 1].copy(),
            layer_gain=bufs["layer_gain"],
            layer_copies=bufs["layer_copies"],
            layer_order=bufs["layer_order"],
            num_stages=n, copies=int(sc.copies),
            objective_before=float(sc.objective_before),
            objective_after=float(sc.objective_after),
            current=cur.copy(), phy2log=phy2log.copy())

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
