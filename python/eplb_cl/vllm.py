"""vLLM EPLB policy backed by libeplb-cl.

vLLM's contract (vllm/distributed/eplb/policy/abstract.py): a policy class
whose classmethod rebalance_experts(weight, num_replicas, num_groups,
num_nodes, num_ranks, old_global_expert_indices=None) returns the new
physical_to_logical_map [layers, num_replicas] as a CPU integer tensor.
vllm/distributed/eplb/eplb_state.py (rearrange) calls it on every rank
with the load window summed over time (.cpu(), int32 token counts) and the
current map; a startup profile run passes all-zero loads. Policies live in
the dict EPLB_POLICIES of vllm/distributed/eplb/policy/__init__.py.

Every rank computes the plan itself: the library gives the same plan for
the same loads and seed on every backend and device, so the ranks agree.
"""

import os
import warnings

from . import _convert, _threads
from ._errors import EplbError

POLICY_NAME = "eplb_cl"


def _base():
    # Subclass vLLM's ABC where vLLM is installed, so isinstance checks
    # pass; a plain class otherwise (tests, and engines without vLLM).
    try:
        from vllm.distributed.eplb.policy.abstract import AbstractEplbPolicy
    except Exception:
        return object
    return AbstractEplbPolicy


class EplbClPolicy(_base()):
    """vLLM's policy interface over eplb_cl (options: eplb_cl.configure)."""

    @classmethod
    def rebalance_experts(cls, weight, num_replicas, num_groups, num_nodes,
                          num_ranks, old_global_expert_indices=None):
        w = _convert.to_numpy(weight)
        if w.ndim == 3:  # a [samples, layers, experts] window
            w = _convert.window_sum(w)
        current = None
        if old_global_expert_indices is not None:
            current = _convert.to_numpy(old_global_expert_indices)
            # After a scale up or down the old map has another width: it
            # cannot seed this plan.
            if current.shape != (w.shape[0], num_replicas):
                current = None
        try:
            plan = _threads.plan(w, num_replicas, num_groups, num_nodes,
                                 num_ranks, current=current)
        except EplbError as exc:
            if current is None or exc.name != "EPLB_ERR_BAD_PLAN":
                raise
            # The engine runs this map whatever the library thinks of it
            # (say, a group split over two nodes): plan afresh, not fail.
            warnings.warn("eplb_cl: the current expert map cannot seed the "
                          "re-plan (%s); planning from scratch" % exc.detail)
            plan = _threads.plan(w, num_replicas, num_groups, num_nodes,
                                 num_ranks)
        phy2log = plan.phy2log.astype("int64")
        if _convert.is_torch(weight) or _convert.is_torch(
                old_global_expert_indices):
            import torch
            return torch.from_numpy(phy2log)
        return phy2log

    def plan_rebalance(self, context, policy_state=None):
        """Newer vLLM's instance entry point (EplbRebalanceContext in,
        EplbPlan out): the legacy call on the summed load window."""
        from vllm.distributed.eplb.policy.abstract import EplbPlan
        t = context.topology
        return EplbPlan(self.rebalance_experts(
            context.load_window_cpu, context.num_replicas, t.num_groups,
            t.num_nodes, t.num_ranks, context.physical_to_logical_map_cpu))


def register():
    """Puts EplbClPolicy in vLLM's policy table as "eplb_cl" (the
    vllm.general_plugins entry point calls this in every vLLM process).
    vLLM checks --eplb-config's policy name against a fixed list, so with
    EPLB_CL_VLLM_DEFAULT=1 it also takes the place of "default"."""
    from vllm.distributed.eplb import policy as vllm_policy
    vllm_policy.EPLB_POLICIES[POLICY_NAME] = EplbClPolicy
    if os.environ.get("EPLB_CL_VLLM_DEFAULT") == "1":
        vllm_policy.EPLB_POLICIES["default"] = EplbClPolicy
    return EplbClPolicy
