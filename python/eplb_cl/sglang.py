"""SGLang's EPLB dispatcher signature, backed by libeplb-cl.

SGLang's contract (python/sglang/srt/eplb/eplb_algorithms/__init__.py):
rebalance_experts(tokens_per_expert, num_physical_experts,
num_local_physical_experts, num_groups, num_nodes, algorithm) returns
DeepSeek's (phy2log, log2phy, logcnt). tokens_per_expert is int32, may sit
on a GPU and carries a leading window axis [X, L, E], which the deepseek
algorithms sum; python/sglang/srt/eplb/expert_location.py calls it as
eplb_algorithms.rebalance_experts(...), so install() can replace it.
"""

from . import _convert, _threads
from .deepseek import deepseek_outputs


def _algorithm_name(algorithm):
    return getattr(algorithm, "name", str(algorithm))


def rebalance_experts(tokens_per_expert, num_physical_experts,
                      num_local_physical_experts, num_groups, num_nodes,
                      algorithm, active_ranks=None, broken_ranks=None):
    """SGLang's dispatcher: algorithm (an EplbAlgorithm or its name) picks
    the policy as SGLang does: "*_hierarchical" hierarchical, the others
    (deepseek, deepseek_vec, elasticity_aware) global. active_ranks (1 =
    usable, elasticity_aware's) or broken_ranks (1 = broken) mark dead
    GPUs, whose slots then hold -1."""
    name = _algorithm_name(algorithm)
    if name not in ("deepseek", "deepseek_hierarchical", "deepseek_vec",
                    "deepseek_vec_hierarchical", "elasticity_aware"):
        raise NotImplementedError("eplb_cl has no algorithm %r" % name)
    hierarchical = name.endswith("_hierarchical")
    counts = _convert.to_numpy(tokens_per_expert)
    if counts.ndim == 3:
        counts = _convert.window_sum(counts)
    num_gpus = num_physical_experts // num_local_physical_experts
    if hierarchical:
        if num_groups is None:
            raise ValueError("the hierarchical algorithms need num_groups")
        groups, nodes, policy = num_groups, num_nodes, "hierarchical"
    else:
        # SGLang's global policy is the hierarchical one with one group
        # on one node.
        groups, nodes, policy = 1, 1, "global"
    mask = None
    if active_ranks is not None:
        mask = _convert.to_numpy(active_ranks) != 0
    if broken_ranks is not None:
        alive = _convert.to_numpy(broken_ranks) == 0
        mask = alive if mask is None else mask & alive
    if mask is not None and mask.all():
        mask = None
    plan = _threads.plan(counts, num_physical_experts, groups, nodes,
                         num_gpus, mask=mask, policy=policy)
    return deepseek_outputs(plan, tokens_per_expert)


def install():
    """Makes SGLang plan with eplb_cl whatever --eplb-algorithm names:
    replaces sglang.srt.eplb.eplb_algorithms.rebalance_experts. Call it in
    each SGLang process before the first rebalance (e.g. in a
    sitecustomize.py, or a launcher that imports sglang)."""
    from sglang.srt.eplb import eplb_algorithms
    eplb_algorithms.rebalance_experts = rebalance_experts
    return rebalance_experts
