"""vLLM EPLB policy backed by libeplb-cl.

vLLM's contract (vllm/distributed/eplb/policy/abstract.py), in each of the
forms its tree has had, all served by EplbClPolicy:

* classmethod rebalance_experts(weight, num_replicas, num_groups,
  num_nodes, num_ranks, old_global_expert_indices=None) returns the new
  physical_to_logical_map [layers, num_replicas] as a CPU int64 tensor
  (DefaultEplbPolicy's form; vllm/distributed/eplb/eplb_state.py calls it
  with the load window summed over time, int32 token counts, and the
  current map; a startup profile run passes all-zero loads);
* instance plan_rebalance(context, policy_state=None) and instance
  rebalance_experts(context, policy_state) take an EplbRebalanceContext
  (load_window_cpu [samples, layers, experts], physical_to_logical_map_cpu,
  topology.num_groups/num_nodes/num_ranks, num_replicas) and return an
  EplbPlan whose physical_to_logical_map is a CPU int64 tensor;
* classmethod preserve_intragpu_slots(phy2log, num_ranks, old_phy2log).

The rules are DefaultEplbPolicy's (and eplb.py's): num_groups %
num_nodes != 0 plans globally and ignores num_groups (even one that does
not divide the experts); shapes that do not divide raise
EplbAssertionError, an EplbError that is also the AssertionError vLLM
expects; with an old map of the same shape, experts that stay on a GPU
keep their old slots (preserve_intragpu_slots).

The old map: -1 marks an empty slot (after a scale-up, new GPUs' slots
hold -1). Layers where every expert still holds a slot are re-planned
from the map, -1 slots counting as empty; layers the map cannot seed
(an expert in no slot, an id outside -1..E-1) are planned afresh, with a
warning; a map of another width (the EP group was resized) is not used.

Choosing the policy. vLLM checks --eplb-config's policy name against a
fixed list (Literal["default"]), so "policy": "eplb_cl" is refused. Two
routes around that check:

1. EPLB_CL_VLLM_DEFAULT=1 in the engine's environment: register() (the
   vllm.general_plugins entry point, run in every vLLM process) puts
   EplbClPolicy in place of "default". Works with async rearrangement,
   which requires the name "default".
2. Where vLLM has EPLB connectors (vllm/distributed/eplb/connector.py):
   --eplb-config '{"connector": "EplbClConnector",
   "connector_module_path": "eplb_cl.vllm", "use_async": false}'
   EplbClConnector.placement_policy() then supplies EplbClPolicy;
   vLLM requires synchronous placement for connectors.

Every rank computes the plan itself: the library gives the same plan for
the same loads and seed on every backend and device, so the ranks agree.

The re-plan from the old map is the library's re-plan: a layer whose
re-plan would lower its largest GPU load by less than min_gain (a share;
EplbClPolicy.min_gain, the min_gain keyword of rebalance_experts, or
EPLB_CL_MIN_GAIN in the environment at register(); default
MIN_GAIN_DEFAULT, the library's) keeps its placement, and
EplbClPolicy.last_layer_order() gives the layers of the last rebalance
(with EplbClPolicy.record_layer_order set: it costs the migration
schedule, whose plan also leaves out the changes a layer no longer needs
once at the re-plan's largest load) in the order to move them, for
engines that move a layer at a time.
Layers whose old map has empty slots are re-planned in full (every slot
filled), as are layers planned afresh.
"""

import os
import threading
import warnings
from typing import Any, List, NamedTuple, Optional, Tuple

import numpy as np

from . import _convert, _threads
from ._errors import EplbError, EplbInputError, drop_in_errors
from ._lib import MIN_GAIN_DEFAULT
from .deepseek import eplb_policy_sizes

POLICY_NAME = "eplb_cl"


def _vllm(module: str, name: str) -> Any:
    # vLLM's class where vLLM is installed, so isinstance checks pass;
    # None otherwise (tests, and engines without vLLM).
    try:
        mod = __import__(module, fromlist=[name])
        return getattr(mod, name)
    except Exception:
        return None


_POLICY_BASE = _vllm("vllm.distributed.eplb.policy.abstract",
                     "AbstractEplbPolicy") or object
_CONNECTOR_BASE = _vllm("vllm.distributed.eplb.connector",
                        "EplbConnectorBase") or object

# The layer order of the last rebalance in this process (any thread: vLLM
# may plan on a worker thread and move layers on another).
_last_order_lock = threading.Lock()
_last_order: Optional[np.ndarray] = None


class _Plan(NamedTuple):
    """Stands for vLLM's EplbPlan where vLLM has none."""
    physical_to_logical_map: Any


def _eplb_plan(physical_to_logical_map: Any) -> Any:
    cls = _vllm("vllm.distributed.eplb.policy.abstract", "EplbPlan")
    if cls is None:
        cls = _vllm("vllm.distributed.eplb.policy", "EplbPlan")
    return (cls or _Plan)(physical_to_logical_map)


def _is_context(x: Any) -> bool:
    return hasattr(x, "load_window_cpu") and hasattr(x, "topology")


def _preserve(new: np.ndarray, old: np.ndarray, num_ranks: int) -> np.ndarray:
    """preserve_intragpu_slots on numpy arrays of one shape."""
    L, P = new.shape
    S = P // num_ranks
    out = new.copy()
    rows = np.arange(L)
    for g in range(num_ranks):
        n = new[:, g * S:(g + 1) * S]
        o = old[:, g * S:(g + 1) * S]
        res = out[:, g * S:(g + 1) * S]  # a view into out
        taken = np.zeros((L, S), bool)  # new positions already placed
        kept = np.zeros((L, S), bool)   # old slots keeping their expert
        for s in range(S):
            match = (n == o[:, s:s + 1]) & ~taken
            has = match.any(axis=1)
            if not has.any():
                continue
            pos = match.argmax(axis=1)  # the first unplaced match
            r, p = rows[has], pos[has]
            res[r, s] = n[r, p]
            taken[r, p] = True
            kept[r, s] = True
        # Each row has as many free slots as unplaced items: row-major
        # boolean indexing pairs them row by row, each in slot order.
        res[~kept] = n[~taken]
    return out


class EplbClPolicy(_POLICY_BASE):  # type: ignore[misc, valid-type]
    """vLLM's policy interface over eplb_cl (options: eplb_cl.configure).

    min_gain: re-planning from the old map, a layer whose re-plan would
    lower its largest GPU load by less than this share (0.01: 1%) keeps
    its placement; MIN_GAIN_DEFAULT (the library's default) unless set
    here, on an instance or subclass, or by EPLB_CL_MIN_GAIN at
    register()."""

    min_gain: float = MIN_GAIN_DEFAULT
    # Record last_layer_order() on every rebalance: the library then
    # builds the migration schedule too, which costs time on each call.
    record_layer_order: bool = False

    @classmethod
    def rebalance_experts(cls, weight: Any = None, num_replicas: Any = None,
                          num_groups: Optional[int] = None,
                          num_nodes: Optional[int] = None,
                          num_ranks: Optional[int] = None,
                          old_global_expert_indices: Any = None, *,
                          context: Any = None,
                          policy_state: Any = None,
                          min_gain: Optional[float] = None) -> Any:
        """The legacy classmethod (weight, num_replicas, num_groups,
        num_nodes, num_ranks, old_global_expert_indices=None) -> the new
        physical_to_logical_map (torch int64 when weight or the old map is
        a tensor, else numpy int64); or, called as
        rebalance_experts(context, policy_state) as vLLM's newest abstract
        class has it, an EplbPlan (see plan_rebalance). min_gain: this
        call's, instead of the class's (applies to the re-plan from the
        old map)."""
        gain = cls.min_gain if min_gain is None else min_gain
        if context is None and _is_context(weight):
            context = weight  # (context, policy_state): the state is unused
        if context is not None:
            return cls._plan_for(context, gain)
        return cls._legacy(weight, num_replicas, num_groups, num_nodes,
                           num_ranks, old_global_expert_indices, gain)

    def plan_rebalance(self, context: Any, policy_state: Any = None) -> Any:
        """vLLM's instance entry point (EplbRebalanceContext in, EplbPlan
        out): the legacy call on the load window summed over its samples
        and the current map, with this instance's min_gain."""
        return self._plan_for(context, self.min_gain)

    @classmethod
    def last_layer_order(cls) -> Optional[np.ndarray]:
        """The layers of this process's last rebalance from an old map,
        in the order to move them (int64 indices into the map's layers):
        layers planned afresh (the old map could not seed them) first,
        then the re-planned layers that change, by gain per copy (the
        library's layer_order: the largest GPU load removed per expert
        copied, best first), then the layers that keep their placement.
        None before any such rebalance, after one without an old map,
        and while record_layer_order is off (the order costs the
        schedule)."""
        with _last_order_lock:
            return None if _last_order is None else _last_order.copy()

    def create_state(self, num_moe_layers: int) -> Any:
        """vLLM's per-model policy state: this policy keeps none."""
        base = getattr(super(), "create_state", None)
        return base(num_moe_layers) if base is not None else None

    def on_layer_committed(self, policy_state: Any, plan: Any,
                           layer_idx: int) -> None:
        """Nothing to advance: the plan depends on the loads and the map."""
        return None

    @classmethod
    def _plan_for(cls, context: Any, min_gain: Any) -> Any:
        window = context.load_window_cpu
        t = context.topology
        phy2log = cls._legacy(window, context.num_replicas, t.num_groups,
                              t.num_nodes, t.num_ranks,
                              context.physical_to_logical_map_cpu, min_gain)
        if not _convert.is_torch(phy2log):
            try:
                import torch
                phy2log = torch.from_numpy(phy2log)
            except ImportError:
                pass
        return _eplb_plan(phy2log)

    @classmethod
    def _legacy(cls, weight: Any, num_replicas: Any, num_groups: Any,
                num_nodes: Any, num_ranks: Any, old: Any,
                min_gain: Any = MIN_GAIN_DEFAULT) -> Any:
        global _last_order
        with _last_order_lock:
            _last_order = None  # until this call succeeds
        gain = _convert.share(min_gain, "min_gain")
        w = _convert.to_numpy(weight, "weight")
        if w.ndim == 3 and _threads.forecast_options():
            # eplb_cl.configure(forecast=...): the window's samples are
            # planned for the next window (all-zero samples left out)
            kept = _threads.samples(w, "weight")
            w = kept if kept is not None else _convert.window_sum(w)
        elif w.ndim == 3:  # a [samples, layers, experts] window
            w = _convert.window_sum(w)
        w = _convert.loads(w, w.ndim if w.ndim == 3 else 2)
        groups, nodes = eplb_policy_sizes(num_groups, num_nodes)
        P = _convert.size(num_replicas, "num_replicas")
        M = _convert.size(num_ranks, "num_ranks")
        current = None
        if old is not None:
            o = _convert.to_numpy(old, "old_global_expert_indices")
            # After a scale up or down the old map has another width: it
            # cannot seed this plan (nor keep slots).
            if o.shape == (w.shape[-2], P) and o.dtype.kind in "iu":
                current = o
        with drop_in_errors():
            phy2log, first, ranked = cls._plan_rows(w, P, groups, nodes, M,
                                                    current, gain)
        order = None
        if current is not None:
            phy2log = cls.preserve_intragpu_slots(phy2log, M, current)
        if current is not None and cls.record_layer_order:
            changes = (phy2log != current).any(axis=1)
            by_gain = np.asarray(ranked, np.int64)
            order = np.concatenate([np.asarray(first, np.int64),
                                    by_gain[changes[by_gain]],
                                    by_gain[~changes[by_gain]]])
        with _last_order_lock:
            _last_order = order
        if _convert.is_torch(weight) or _convert.is_torch(old):
            import torch
            return torch.from_numpy(phy2log)
        return phy2log

    @classmethod
    def _plan_rows(cls, w: np.ndarray, P: int, groups: int, nodes: int,
                   M: int, current: Optional[np.ndarray], min_gain: float
                   ) -> Tuple[np.ndarray, List[int], List[int]]:
        """int64 [L, P]: re-planned from current where current can seed a
        layer (the migration with min_gain), a fresh plan elsewhere; with
        the layers planned afresh and the re-planned ones in the
        library's layer order."""
        # a window of samples [X, L, E] is planned for the next window
        forecast = _threads.forecast_options() if w.ndim == 3 else {}

        def layers(rows: Any) -> np.ndarray:
            return w[:, rows] if w.ndim == 3 else w[rows]

        def fresh(rows: Any) -> np.ndarray:
            return _threads.plan(layers(rows), P, groups, nodes, M,
                                 request=forecast).phy2log.astype(np.int64)

        if current is None:
            return fresh(slice(None)), [], []
        L, E = w.shape[-2:]
        valid = ((current >= -1) & (current < E)).all(axis=1)
        complete = np.array([
            v and (np.bincount(row[row >= 0], minlength=E) > 0).all()
            for v, row in zip(valid, current)], dtype=bool)
        if not valid.all():
            warnings.warn("eplb_cl: the current expert map holds ids outside "
                          "-1..%d in %d of %d layers; planning those from "
                          "scratch" % (E - 1, int((~valid).sum()), L))
        if not complete[valid].all():
            warnings.warn("eplb_cl: the current expert map leaves some "
                          "expert in no slot in %d of %d layers; planning "
                          "those from scratch"
                          % (int((valid & ~complete).sum()), L))
        out = np.empty((L, P), np.int64)
        first = np.flatnonzero(~complete).tolist()
        ranked: List[int] = []
        if not complete.all():
            out[~complete] = fresh(~complete)
        # A layer with empty slots (-1: the new GPUs after a scale-up) is
        # re-planned in full: the migration would leave the slots that do
        # not lower its largest load empty, and vLLM's maps have none.
        empty = complete & (current < 0).any(axis=1)
        for group, migrate in ((complete & ~empty, True), (empty, False)):
            if not group.any():
                continue
            rows: Any = group if not group.all() else slice(None)
            # (min_gain alone costs nothing in the library; the schedule
            # is asked for only for the layer order)
            staged = migrate and cls.record_layer_order
            request = dict(forecast, min_gain=min_gain if migrate else 0.0)
            if staged:
                request.update(schedule=True)
            try:
                result = _threads.plan(layers(rows), P, groups, nodes, M,
                                       current=current[rows],
                                       request=request)
            except EplbError as exc:
                if exc.name != "EPLB_ERR_BAD_PLAN":
                    raise
                # The engine runs this map whatever the library thinks of
                # it (say, a group split over two nodes): plan afresh.
                warnings.warn("eplb_cl: the current expert map cannot seed "
                              "the re-plan (%s); planning from scratch"
                              % exc.detail)
                out[rows] = fresh(rows)
                first += np.flatnonzero(group).tolist()
                continue
            if staged:
                plan, schedule = result
                ranked = np.flatnonzero(group)[schedule.layer_order].tolist()
            elif migrate:
                plan = result
            else:
                plan = result
                first += np.flatnonzero(group).tolist()
            out[rows] = plan.phy2log
        first.sort()
        return out, first, ranked

    @classmethod
    def preserve_intragpu_slots(cls, phy2log: Any, num_ranks: int,
                                old_phy2log: Any) -> Any:
        """vLLM's DefaultEplbPolicy.preserve_intragpu_slots: per GPU (the
        num_ranks equal runs of slots) and layer, the new map's experts
        that the GPU already held go back to their old slots, and the
        experts new to the GPU fill the remaining slots in their order.

        Precisely: the GPU's old slots are taken in order; each takes the
        first new entry of the GPU not yet placed that holds the same
        expert (so an expert kept twice keeps both slots). The new entries
        left over then fill the slots left over, both in slot order. The
        GPU's multiset of experts is the new map's; only its order
        changes. Returns phy2log unchanged when num_ranks does not divide
        its width or the old map's shape differs. numpy or torch in (the
        result is phy2log's kind and dtype)."""
        new = _convert.to_numpy(phy2log, "phy2log")
        old = _convert.to_numpy(old_phy2log, "old_phy2log")
        ranks = _convert.integer(num_ranks, "num_ranks")
        if (new.ndim != 2 or old.shape != new.shape or ranks <= 0
                or new.shape[1] % ranks != 0):
            return phy2log
        out = _preserve(new, old, ranks)
        if _convert.is_torch(phy2log):
            import torch
            return torch.from_numpy(out).to(phy2log.device)
        return out


class EplbClConnector(_CONNECTOR_BASE):  # type: ignore[misc, valid-type]
    """An EPLB connector that only supplies the placement policy:
    --eplb-config '{"connector": "EplbClConnector",
    "connector_module_path": "eplb_cl.vllm", "use_async": false}'
    selects EplbClPolicy without naming it in "policy" (which vLLM checks
    against its own list). It does no per-token routing."""

    def __init__(self, eplb_config: Any = None) -> None:
        if _CONNECTOR_BASE is not object:
            super().__init__(eplb_config)
        else:
            self.eplb_config = eplb_config
            self.routing = None

    @classmethod
    def placement_policy(cls, eplb_config: Any) -> type:
        return EplbClPolicy

    @classmethod
    def routing_capabilities(cls, eplb_config: Any) -> None:
        return None

    @classmethod
    def inapplicable_reason(cls, eplb_config: Any,
                            num_redundant_experts: int) -> Optional[str]:
        return None

    def bind_routing(self, **kwargs: Any) -> None:
        """No per-token routing: vLLM keeps its own replica choice."""
        return None

    def shutdown(self) -> None:
        self.routing = None


def register() -> type:
    """Puts EplbClPolicy in vLLM's policy table as "eplb_cl" (the
    vllm.general_plugins entry point calls this in every vLLM process).
    vLLM checks --eplb-config's policy name against a fixed list, so with
    EPLB_CL_VLLM_DEFAULT=1 it also takes the place of "default" (see the
    module's docstring for the connector route). EPLB_CL_MIN_GAIN (a share
    in [0, 1)) sets EplbClPolicy.min_gain."""
    from vllm.distributed.eplb import policy as vllm_policy
    gain = os.environ.get("EPLB_CL_MIN_GAIN")
    if gain:
        try:
            value = float(gain)
        except ValueError:
            raise EplbInputError("EPLB_CL_MIN_GAIN", "EPLB_CL_MIN_GAIN must "
                                 "be a share in [0, 1), not %r"
                                 % gain) from None
        EplbClPolicy.min_gain = _convert.share(value, "EPLB_CL_MIN_GAIN")
    vllm_policy.EPLB_POLICIES[POLICY_NAME] = EplbClPolicy
    if os.environ.get("EPLB_CL_VLLM_DEFAULT") == "1":
        vllm_policy.EPLB_POLICIES["default"] = EplbClPolicy
    return EplbClPolicy
