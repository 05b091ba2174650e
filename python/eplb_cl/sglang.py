"""SGLang's EPLB dispatcher signature, backed by libeplb-cl.

SGLang's contract (python/sglang/srt/eplb/eplb_algorithms/__init__.py):
rebalance_experts(tokens_per_expert, num_physical_experts,
num_local_physical_experts, num_groups, num_nodes, algorithm) returns
DeepSeek's (phy2log, log2phy, logcnt). tokens_per_expert is int32, may sit
on a GPU and carries a leading window axis [X, L, E], which the deepseek
algorithms sum; python/sglang/srt/eplb/expert_location.py calls it as
eplb_algorithms.rebalance_experts(...), so install() can replace it.

Dead ranks: SGLang's elasticity_aware algorithm reads the usable ranks
from its elastic-EP state (sglang.srt.elastic_ep.elastic_ep's
ElasticEPStateManager.instance(): active_ranks_cpu, else active_ranks);
its callers pass none. This dispatcher does the same when no
active_ranks or broken_ranks is passed and SGLang is importable, for
every algorithm: a rank the elastic state marks dead never gets an
expert.
"""

import sys
from typing import Any, Dict, List, Optional, Tuple

from . import _convert, _threads
from ._errors import EplbInputError, drop_in_errors
from .deepseek import deepseek_outputs

ALGORITHMS = ("deepseek", "deepseek_hierarchical", "deepseek_vec",
              "deepseek_vec_hierarchical", "elasticity_aware",
              "elasticity_aware_hierarchical")


def _algorithm_name(algorithm: Any) -> str:
    return getattr(algorithm, "name", str(algorithm))


def elastic_active_ranks() -> Optional[Any]:
    """The usable ranks of SGLang's elastic-EP state (1 = usable), or None
    when SGLang (or its elastic EP) is not importable or has no state."""
    try:
        from sglang.srt.elastic_ep.elastic_ep import ElasticEPStateManager
    except Exception:
        return None
    try:
        state = ElasticEPStateManager.instance()
    except Exception:
        return None
    if state is None:
        return None
    ranks = getattr(state, "active_ranks_cpu", None)
    if ranks is None:
        ranks = getattr(state, "active_ranks", None)
    return ranks


def rebalance_experts(tokens_per_expert: Any, num_physical_experts: int,
                      num_local_physical_experts: int,
                      num_groups: Optional[int], num_nodes: int,
                      algorithm: Any, active_ranks: Any = None,
                      broken_ranks: Any = None) -> Tuple[Any, Any, Any]:
    """SGLang's dispatcher: algorithm (an EplbAlgorithm or its name) picks
    the policy as SGLang does: "*_hierarchical" hierarchical, the others
    (deepseek, deepseek_vec, elasticity_aware) global.

    active_ranks (1 = usable) or broken_ranks (1 = broken): shape
    (num_gpus,), bool or integer 0/1, where num_gpus is
    num_physical_experts // num_local_physical_experts; dead GPUs' slots
    then hold -1. With neither, SGLang's elastic-EP state gives them when
    SGLang is importable (see the module's docstring).

    Refused before any planning, with EplbInputError (a ValueError) naming
    the argument: num_local_physical_experts of 0 or one that does not
    divide num_physical_experts, masks of another shape or dtype, masks
    with values other than 0 and 1, masks that leave no GPU usable.
    """
    name = _algorithm_name(algorithm)
    if name not in ALGORITHMS:
        raise NotImplementedError("eplb_cl has no algorithm %r" % name)
    hierarchical = name.endswith("_hierarchical")
    physical = _convert.size(num_physical_experts, "num_physical_experts")
    local = _convert.size(num_local_physical_experts,
                          "num_local_physical_experts")
    if local == 0:
        raise EplbInputError("num_local_physical_experts",
                             "num_local_physical_experts must be positive, "
                             "not 0")
    if physical % local != 0:
        raise EplbInputError(
            "num_local_physical_experts",
            "num_local_physical_experts (%d) must divide "
            "num_physical_experts (%d): every GPU holds as many slots"
            % (local, physical))
    num_gpus = physical // local
    counts = _convert.to_numpy(tokens_per_expert, "tokens_per_expert")
    forecast = _threads.forecast_options()
    if counts.ndim == 3 and forecast:
        # eplb_cl.configure(forecast=...): the window's samples are
        # planned for the next window (all-zero samples left out)
        kept = _threads.samples(counts, "tokens_per_expert")
        counts = (kept if kept is not None
                  else _convert.window_sum(counts, "tokens_per_expert"))
    elif counts.ndim == 3:
        counts = _convert.window_sum(counts, "tokens_per_expert")
    request = forecast if counts.ndim == 3 else None
    if hierarchical:
        if num_groups is None:
            raise EplbInputError("num_groups", "the hierarchical algorithms "
                                 "need num_groups")
        groups = _convert.size(num_groups, "num_groups")
        nodes = _convert.size(num_nodes, "num_nodes")
        policy = "hierarchical"
    else:
        # SGLang's global policy is the hierarchical one with one group
        # on one node.
        groups, nodes, policy = 1, 1, None
    if active_ranks is None and broken_ranks is None:
        active_ranks = elastic_active_ranks()
    mask = None
    if active_ranks is not None:
        mask = _convert.mask(active_ranks, num_gpus, "active_ranks")
    if broken_ranks is not None:
        alive = _convert.mask(broken_ranks, num_gpus, "broken_ranks",
                              dead_value=1)
        mask = alive if mask is None else mask & alive
        if not mask.any():
            raise EplbInputError("broken_ranks", "active_ranks and "
                                 "broken_ranks together leave no usable GPU")
    if mask is not None and mask.all():
        mask = None
    overrides: Dict[str, Any] = {} if policy is None else {"policy": policy}
    with drop_in_errors():
        plan = _threads.plan(counts, physical, groups, nodes, num_gpus,
                             mask=mask, request=request, **overrides)
    return deepseek_outputs(plan, tokens_per_expert)


def install() -> Any:
    """Makes SGLang plan with eplb_cl whatever --eplb-algorithm names:
    replaces SGLang's dispatcher
    (sglang.srt.eplb.eplb_algorithms.rebalance_experts) in that module
    and in every module already imported that holds it under any name
    (`from ... import rebalance_experts` made a copy of the reference).
    Call it in each SGLang process before the first rebalance (e.g. in a
    sitecustomize.py, or a launcher that imports sglang). Returns this
    module's rebalance_experts; install.rebound lists the "module.name"
    attributes it replaced."""
    from sglang.srt.eplb import eplb_algorithms
    original = eplb_algorithms.__dict__.get("rebalance_experts")
    rebound: List[str] = []
    if original is not None and original is not rebalance_experts:
        for mod_name, module in list(sys.modules.items()):
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            for attr, value in list(namespace.items()):
                if value is original:
                    setattr(module, attr, rebalance_experts)
                    rebound.append("%s.%s" % (mod_name, attr))
    eplb_algorithms.rebalance_experts = rebalance_experts
    install.rebound = sorted(rebound)  # type: ignore[attr-defined]
    return rebalance_experts
