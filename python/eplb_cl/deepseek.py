"""DeepSeek's contract: rebalance_experts() as in eplb.py of
github.com/deepseek-ai/EPLB (also copied into SGLang as
python/sglang/srt/eplb/eplb_algorithms/deepseek.py)."""

import numpy as np

from . import _convert, _threads


def deepseek_outputs(plan, like):
    """eplb.py's (phy2log, log2phy, logcnt) from a Plan: int64; log2phy
    cut to the largest replica count of the whole plan (eplb.py's
    `maxlogcnt = logcnt.max().item()`, not P-E+1), padded with -1. torch
    tensors on like's device when like is a tensor, else numpy."""
    maxcnt = max(int(plan.logcnt.max()), 1)
    out = (plan.phy2log.astype(np.int64),
           np.ascontiguousarray(plan.log2phy[:, :, :maxcnt], dtype=np.int64),
           plan.logcnt.astype(np.int64))
    if not _convert.is_torch(like):
        return out
    import torch
    return tuple(torch.from_numpy(a).to(like.device) for a in out)


def rebalance_experts(weight, num_replicas, num_groups, num_nodes, num_gpus):
    """Drop-in for eplb.py's rebalance_experts.

    weight: [layers, num_logical_experts] loads: numpy, or torch on any
    device, of any integer or float dtype. Returns (phy2log [L, P],
    log2phy [L, E, X], logcnt [L, E]), int64, torch on weight's device
    when weight is a tensor, else numpy. The policy is eplb.py's:
    hierarchical when num_groups % num_nodes == 0, else global.
    The plan comes from this thread's context for eplb_cl.configure()'s
    options (the library's candidate search unless configured with
    candidates=1, swap_rounds=0, which is eplb.py's own algorithm).
    """
    plan = _threads.plan(weight, num_replicas, num_groups, num_nodes,
                         num_gpus)
    return deepseek_outputs(plan, weight)
