#!/usr/bin/env python3
"""Runs one of vLLM's EPLB test files, unchanged, with eplb_cl's policy in
the place of vLLM's DefaultEplbPolicy.

    python3 python/tools/run_vllm_tests.py PATH/test_eplb_algo.py \\
        [--search] [PYTEST_ARGS...]

PATH/test_eplb_algo.py is vLLM's tests/distributed/test_eplb_algo.py (a
copy of the file from a vLLM checkout, or the checkout's own). The
library comes from EPLB_CL_LIBRARY (or the other places eplb_cl looks),
the package from PYTHONPATH or an install; torch and pytest are needed.

What it substitutes, before pytest imports the file:

* where vLLM is installed: DefaultEplbPolicy in
  vllm.distributed.eplb.policy.default and vllm.distributed.eplb.policy,
  and EPLB_POLICIES["default"], become eplb_cl.vllm.EplbClPolicy;
* where it is not: stand-in modules named as vLLM's. The test file's
  `from vllm.distributed.eplb.policy.default import DefaultEplbPolicy`
  then gets EplbClPolicy, and `from vllm.distributed.eplb.eplb_state
  import compute_logical_maps, _compute_eplb_load_stats` gets stand-ins
  for those two helpers (written to vLLM's documented meaning: the
  [layers, experts, max copies] slot lists and copy counts of a
  phy2log map whose -1 slots are empty; the per-layer mean and maximum
  over ranks, summed over layers). conftest.py files are not loaded then
  (--noconftest): vLLM's would import vLLM.

The policy plans in eplb.py's deterministic mode (candidates=1,
swap_rounds=0): vLLM's tests check DeepSeek's example plan exactly.
--search keeps the library's candidate search instead. EPLB_CL_BACKEND
picks the backend (default "reference"; "opencl", "auto").

Revision: written against vLLM's tests/distributed/test_eplb_algo.py in
which rebalance_experts returns the map alone and preserve_intragpu_slots
takes (phy2log, num_ranks, old_phy2log) (vLLM commit 030ea52e). Earlier
files, in which rebalance_experts returned (phy2log, log2phy, logcnt),
test the older contract and fail here.

Exit status: pytest's.
"""

import os
import sys
import types
from typing import Any, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))


def _stand_in_eplb_state() -> types.ModuleType:
    """vllm.distributed.eplb.eplb_state's helpers that the test file
    imports besides the policy."""
    import torch

    mod = types.ModuleType("vllm.distributed.eplb.eplb_state")

    def compute_logical_maps(physical_to_logical_map: Any,
                             num_logical_experts: int) -> Tuple[Any, Any]:
        p2l = physical_to_logical_map
        per_layer = p2l.dim() == 1
        if per_layer:
            p2l = p2l.unsqueeze(0)
        layers, slots = p2l.shape
        cnt = torch.zeros((layers, num_logical_experts), dtype=p2l.dtype)
        lists: List[List[List[int]]] = [
            [[] for _ in range(num_logical_experts)] for _ in range(layers)]
        for layer in range(layers):
            for slot, expert in enumerate(p2l[layer].tolist()):
                if expert >= 0:
                    lists[layer][expert].append(slot)
                    cnt[layer, expert] += 1
        width = max(1, int(cnt.max().item()) if cnt.numel() else 1)
        l2p = torch.full((layers, num_logical_experts, width), -1,
                         dtype=p2l.dtype)
        for layer in range(layers):
            for expert, where in enumerate(lists[layer]):
                if where:
                    l2p[layer, expert, :len(where)] = torch.tensor(
                        where, dtype=p2l.dtype)
        if per_layer:
            return l2p[0], cnt[0]
        return l2p, cnt

    def _compute_eplb_load_stats(num_tokens_per_rank: Any) -> Tuple[Any, Any]:
        avg = num_tokens_per_rank.mean(dim=1).sum()
        top = num_tokens_per_rank.max(dim=1).values.sum()
        return avg, top

    setattr(mod, "compute_logical_maps", compute_logical_maps)
    setattr(mod, "_compute_eplb_load_stats", _compute_eplb_load_stats)
    return mod


def _install_stand_ins(policy: type) -> None:
    names = ["vllm", "vllm.distributed", "vllm.distributed.eplb",
             "vllm.distributed.eplb.policy",
             "vllm.distributed.eplb.policy.default"]
    mods = {n: types.ModuleType(n) for n in names}
    mods["vllm.distributed.eplb.eplb_state"] = _stand_in_eplb_state()
    for name, mod in mods.items():
        mod.__path__ = []  # a package, so submodules resolve
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(mods[parent], child, mod)
        sys.modules[name] = mod
    setattr(mods["vllm.distributed.eplb.policy"], "EPLB_POLICIES",
            {"default": policy})
    setattr(mods["vllm.distributed.eplb.policy"], "DefaultEplbPolicy",
            policy)
    setattr(mods["vllm.distributed.eplb.policy.default"],
            "DefaultEplbPolicy", policy)


def _patch_vllm(policy: type) -> None:
    import vllm.distributed.eplb.policy as vllm_policy
    import vllm.distributed.eplb.policy.default as vllm_default
    vllm_default.DefaultEplbPolicy = policy
    vllm_policy.DefaultEplbPolicy = policy
    table = getattr(vllm_policy, "EPLB_POLICIES", None)
    if isinstance(table, dict):
        table["default"] = policy


def substitute(search: bool = False) -> List[str]:
    """Puts EplbClPolicy in the place of DefaultEplbPolicy; returns the
    pytest options the substitution needs."""
    try:
        import vllm  # noqa: F401
        have_vllm = True
    except ImportError:
        have_vllm = False
    try:
        import eplb_cl
    except ImportError:  # run from a source tree: the package beside it
        sys.path.insert(0, os.path.dirname(HERE))
        import eplb_cl
    from eplb_cl.vllm import EplbClPolicy
    options: Dict[str, Any] = dict(
        backend=os.environ.get("EPLB_CL_BACKEND", "reference"))
    if not search:
        options.update(candidates=1, swap_rounds=0)
    eplb_cl.configure(**options)
    if have_vllm:
        _patch_vllm(EplbClPolicy)
        return []
    _install_stand_ins(EplbClPolicy)
    return ["--noconftest"]


def main(argv: List[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    path, rest = argv[0], argv[1:]
    search = "--search" in rest
    rest = [a for a in rest if a != "--search"]
    if not os.path.isfile(path):
        print("run_vllm_tests: %s: no such file" % path, file=sys.stderr)
        return 2
    import pytest
    extra = substitute(search)
    return int(pytest.main(["-p", "no:cacheprovider", "-q"] + extra +
                           rest + [path]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
