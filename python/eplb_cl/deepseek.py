"""DeepSeek's contract: rebalance_experts() as in eplb.py of
github.com/deepseek-ai/EPLB (also copied into SGLang as
python/sglang/srt/eplb/eplb_algorithms/deepseek.py).

What "the same as eplb.py" means. In the deterministic mode
(eplb_cl.configure(candidates=1, swap_rounds=0)) the plan is eplb.py's
algorithm on the same float32 loads with every sort stable: identical
phy2log, log2phy and logcnt arrays, for any loads, to eplb.py run with
its sorts keeping equal loads in index order. eplb.py itself sorts with
torch's default sort, which promises no order among equal loads, so
against eplb.py as it runs:

* where no sort meets two equal loads: identical arrays;
* where the only equal loads are copies of one expert (the usual case
  for real-valued loads with redundant experts: an expert's copies carry
  equal loads when they are packed onto GPUs): identical phy2log and
  logcnt, hence the same experts in the same slots of every GPU; each
  expert's row of log2phy names the same slots, possibly in another
  order (which copy is "copy 0");
* where loads of different experts or groups are equal (small integer
  counts often are): which of them goes first depends on the torch build
  and device eplb.py runs on, and the plans may differ in which of the
  tied experts sits on which GPU; ours is the stable order's.

python/tests/test_deepseek_equality.py checks each case against an
independent re-implementation of eplb.py on random loads.

The candidate search (the library's default options) makes other,
better-balanced plans: equality holds for the deterministic mode only.
"""

import threading
from typing import Any, Tuple

import numpy as np

from . import _convert, _threads
from ._errors import drop_in_errors
from .context import Plan


def deepseek_outputs(plan: Plan, like: Any) -> Tuple[Any, Any, Any]:
    """eplb.py's (phy2log, log2phy, logcnt) from a Plan: int64; log2phy
    cut to the largest replica count of the whole plan (eplb.py's
    `maxlogcnt = logcnt.max().item()`, not P-E+1), padded with -1. torch
    tensors on like's device when like is a tensor, else numpy."""
    maxcnt = max(int(plan.logcnt.max()), 1)
    if not _convert.is_torch(like):
        return (plan.phy2log.astype(np.int64),
                np.ascontiguousarray(plan.log2phy[:, :, :maxcnt],
                                     dtype=np.int64),
                plan.logcnt.astype(np.int64))
    return _torch_outputs(plan, maxcnt, like.device)


# Per thread: a pinned host buffer for CUDA outputs and the event of the
# last copy out of it (written again only once that copy is done).
_staging = threading.local()


def _torch_outputs(plan: Plan, maxcnt: int, device: Any
                   ) -> Tuple[Any, Any, Any]:
    """The three outputs as int64 tensors on device, in one upload: the
    int32 plan packed into one (pinned, for a GPU) host buffer, copied
    once and widened to int64 there (half the bytes over the bus, and one
    transfer instead of three)."""
    import torch
    L, P = plan.phy2log.shape
    E = plan.logcnt.shape[1]
    n1, n2, n3 = L * P, L * E * maxcnt, L * E
    n = n1 + n2 + n3
    on_gpu = torch.device(device).type == "cuda"
    buf = getattr(_staging, "buf", None)
    if on_gpu and (buf is None or buf.numel() < n):
        buf = torch.empty(n, dtype=torch.int32, pin_memory=True)
        _staging.buf, _staging.event = buf, None
    if not on_gpu:
        buf = torch.empty(n, dtype=torch.int32)
    elif _staging.event is not None:
        _staging.event.synchronize()  # the last upload read the buffer
    host = buf[:n].numpy()
    host[:n1] = plan.phy2log.reshape(-1)
    host[n1:n1 + n2].reshape(L, E, maxcnt)[...] = plan.log2phy[:, :, :maxcnt]
    host[n1 + n2:] = plan.logcnt.reshape(-1)
    if on_gpu:
        with torch.cuda.device(device):
            wide = buf[:n].to(device, non_blocking=True).long()
            _staging.event = torch.cuda.Event()
            _staging.event.record()
    else:
        wide = buf[:n].to(device).long()
    return (wide[:n1].view(L, P), wide[n1:n1 + n2].view(L, E, maxcnt),
            wide[n1 + n2:].view(L, E))


def eplb_policy_sizes(num_groups: Any, num_nodes: Any) -> Tuple[int, int]:
    """eplb.py's rule for the policy: hierarchical with (num_groups,
    num_nodes) when num_groups % num_nodes == 0, else the global policy,
    which is the hierarchical one with one group on one node: num_groups
    is then ignored, even where it does not divide the experts. The sizes
    are checked first (integers within a C int); num_nodes 0 is left to
    the library to refuse."""
    groups = _convert.size(num_groups, "num_groups")
    nodes = _convert.size(num_nodes, "num_nodes")
    if nodes > 0 and groups % nodes != 0:
        return 1, 1
    return groups, nodes


def rebalance_experts(weight: Any, num_replicas: int, num_groups: int,
                      num_nodes: int, num_gpus: int) -> Tuple[Any, Any, Any]:
    """Drop-in for eplb.py's rebalance_experts.

    weight: [layers, num_logical_experts] loads: numpy, or torch on any
    device, of any bool, integer or float dtype. Returns (phy2log [L, P],
    log2phy [L, E, X], logcnt [L, E]), int64, torch on weight's device
    when weight is a tensor, else numpy. The policy is eplb.py's:
    hierarchical when num_groups % num_nodes == 0, else global (one group
    on one node; num_groups then need not divide the experts).
    The plan comes from this thread's context for eplb_cl.configure()'s
    options (the library's candidate search unless configured with
    candidates=1, swap_rounds=0, which is eplb.py's own algorithm: see
    this module's docstring for what equality with eplb.py means).

    A shape the library refuses raises EplbAssertionError, an EplbError
    that is also an AssertionError (where eplb.py asserts); an argument
    refused before the call (a wrong dtype, a size beyond a C int, a
    float64 load beyond float32) raises EplbInputError, a ValueError.
    """
    groups, nodes = eplb_policy_sizes(num_groups, num_nodes)
    with drop_in_errors():
        plan = _threads.plan(weight, num_replicas, groups, nodes, num_gpus)
    return deepseek_outputs(plan, weight)
