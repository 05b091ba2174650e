"""The vLLM and SGLang adapters, called with their engines' exact argument
lists on tensors of the engines' dtypes; no engine is installed, so the
engine modules they register into are stand-ins."""

import enum
import os
import re
import sys
import types

import numpy as np
import pytest

import eplb_cl
from eplb_cl import sglang as eplb_sglang
from eplb_cl import vllm as eplb_vllm
from conftest import DEEPSEEK, DETERMINISTIC, check_plan, seeded_loads

torch = pytest.importorskip("torch", reason="torch is not installed "
                            "(Debian: python3-torch); the adapters take "
                            "tensors")


@pytest.fixture(autouse=True)
def deterministic_reference():
    eplb_cl.configure(backend="reference", **DETERMINISTIC)
    yield
    eplb_cl.configure(backend=None, candidates=None, swap_rounds=None)


def fresh(w, num_replicas, num_groups, num_nodes, num_gpus, **kw):
    with eplb_cl.Context(backend="reference", **DETERMINISTIC, **kw) as c:
        return c.rebalance(w, num_replicas, num_groups, num_nodes, num_gpus)


# ---- vLLM ----

def test_vllm_call_as_eplb_state_makes_it():
    # vllm/distributed/eplb/eplb_state.py, rearrange():
    # policy.rebalance_experts(global_expert_load_window.cpu(),
    #     num_replicas, num_groups, num_nodes, num_gpus,
    #     eplb_model_state.physical_to_logical_map.cpu())
    w = seeded_loads(21, 58, 256)
    global_expert_load_window = torch.tensor(w).to(torch.int32)
    old = fresh(seeded_loads(22, 58, 256), **DEEPSEEK).phy2log
    physical_to_logical_map = torch.tensor(old).to(torch.int64)
    new = eplb_vllm.EplbClPolicy.rebalance_experts(
        global_expert_load_window.cpu(), 288, 8, 4, 32,
        physical_to_logical_map.cpu())
    assert isinstance(new, torch.Tensor)
    assert new.dtype == torch.int64 and new.device.type == "cpu"
    assert tuple(new.shape) == (58, 288)
    cnt = np.stack([np.bincount(r, minlength=256) for r in new.numpy()])
    assert (cnt >= 1).all() and (cnt.sum(axis=1) == 288).all()


def test_vllm_without_old_map_is_the_fresh_plan():
    w = seeded_loads(23, 8, 64)
    new = eplb_vllm.EplbClPolicy.rebalance_experts(
        torch.tensor(w).to(torch.int32), 80, 8, 2, 8)
    np.testing.assert_array_equal(new.numpy(),
                                  fresh(w, 80, 8, 2, 8).phy2log)


def test_vllm_profile_run_all_zero_loads():
    new = eplb_vllm.EplbClPolicy.rebalance_experts(
        torch.zeros((4, 64), dtype=torch.int32), 80, 8, 2, 8,
        fresh(seeded_loads(30, 4, 64), 80, 8, 2, 8).phy2log)
    assert tuple(new.shape) == (4, 80)
    assert ((new >= 0) & (new < 64)).all()


def test_vllm_old_map_of_another_width_is_ignored():
    # After scaling the EP group the old map has another slot count.
    w = torch.tensor(seeded_loads(24, 8, 64)).to(torch.int32)
    new = eplb_vllm.EplbClPolicy.rebalance_experts(
        w, 80, 8, 2, 8, torch.arange(72).remainder(64).repeat(8, 1))
    assert tuple(new.shape) == (8, 80)


def test_vllm_old_map_with_split_groups_seeds_the_replan():
    # vLLM's first map (experts in order, then the redundant ones) splits
    # groups over nodes; the engine runs it anyway, and the library takes
    # it as the plan in service: no warning, a valid map that copies
    # fewer experts than the fresh plan.
    import warnings as _warnings
    w = seeded_loads(25, 8, 64)
    first = torch.arange(80).remainder(64).repeat(8, 1)
    with _warnings.catch_warnings():
        _warnings.simplefilter("error")
        new = eplb_vllm.EplbClPolicy.rebalance_experts(
            torch.tensor(w).to(torch.int32), 80, 8, 2, 8, first).numpy()
    assert new.shape == (8, 80)
    for row in new:
        assert (np.bincount(row, minlength=64) > 0).all()
    old = first.numpy()
    fresh_map = fresh(w, 80, 8, 2, 8).phy2log
    assert (eplb_cl.copies(old, new, 64, 8)[0]
            <= eplb_cl.copies(old, fresh_map, 64, 8)[0])


def test_vllm_load_window_with_a_sample_axis():
    window = torch.tensor(np.stack([seeded_loads(s, 8, 64)
                                    for s in (26, 27, 28)])).to(torch.int32)
    new = eplb_vllm.EplbClPolicy.rebalance_experts(window, 80, 8, 2, 8)
    total = window.sum(dim=0).numpy().astype(np.float32)
    np.testing.assert_array_equal(new.numpy(),
                                  fresh(total, 80, 8, 2, 8).phy2log)


@pytest.fixture
def fake_vllm(monkeypatch):
    """vllm.distributed.eplb.policy with its EPLB_POLICIES table."""
    names = ["vllm", "vllm.distributed", "vllm.distributed.eplb",
             "vllm.distributed.eplb.policy",
             "vllm.distributed.eplb.policy.abstract"]
    mods = {n: types.ModuleType(n) for n in names}
    for parent, child in zip(names, names[1:]):
        setattr(mods[parent], child.rsplit(".", 1)[1], mods[child])
    mods["vllm.distributed.eplb.policy"].EPLB_POLICIES = {"default": object}

    class EplbPlan:
        def __init__(self, physical_to_logical_map):
            self.physical_to_logical_map = physical_to_logical_map
    mods["vllm.distributed.eplb.policy.abstract"].EplbPlan = EplbPlan
    for n, m in mods.items():
        monkeypatch.setitem(sys.modules, n, m)
    return mods["vllm.distributed.eplb.policy"]


def test_vllm_register_puts_the_policy_in_the_table(fake_vllm, monkeypatch):
    monkeypatch.delenv("EPLB_CL_VLLM_DEFAULT", raising=False)
    eplb_vllm.register()
    assert fake_vllm.EPLB_POLICIES["eplb_cl"] is eplb_vllm.EplbClPolicy
    assert fake_vllm.EPLB_POLICIES["default"] is object
    monkeypatch.setenv("EPLB_CL_VLLM_DEFAULT", "1")
    eplb_vllm.register()
    assert fake_vllm.EPLB_POLICIES["default"] is eplb_vllm.EplbClPolicy


def test_vllm_plan_rebalance_context(fake_vllm):
    window = torch.tensor(np.stack([seeded_loads(29, 8, 64)] * 2))
    ctx = types.SimpleNamespace(
        load_window_cpu=window.to(torch.int32),
        physical_to_logical_map_cpu=None, num_replicas=80,
        topology=types.SimpleNamespace(num_groups=8, num_nodes=2,
                                       num_ranks=8))
    plan = eplb_vllm.EplbClPolicy().plan_rebalance(ctx, None)
    assert tuple(plan.physical_to_logical_map.shape) == (8, 80)


def test_vllm_entry_point_is_declared():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "pyproject.toml")) as f:
        text = f.read()
    assert re.search(r'\[project\.entry-points\."vllm\.general_plugins"\]'
                     r'\s*eplb_cl = "eplb_cl\.vllm:register"', text)


# ---- SGLang ----

class EplbAlgorithm(enum.Enum):
    # The members of SGLang's EplbAlgorithm (eplb_algorithms/__init__.py).
    deepseek = enum.auto()
    deepseek_hierarchical = enum.auto()
    deepseek_vec = enum.auto()
    deepseek_vec_hierarchical = enum.auto()
    elasticity_aware = enum.auto()


def sglang_call(logical_count, algorithm, ep_size=32, **kw):
    # expert_location.py, init_by_eplb():
    num_physical_experts = 288
    return eplb_sglang.rebalance_experts(
        tokens_per_expert=logical_count,
        num_physical_experts=num_physical_experts,
        num_local_physical_experts=num_physical_experts // ep_size,
        num_groups=8, num_nodes=4, algorithm=algorithm, **kw)


def check_sglang(w, outs):
    for o in outs:
        assert isinstance(o, torch.Tensor) and o.dtype == torch.int64
    phy2log, log2phy, logcnt = (o.numpy() for o in outs)
    assert log2phy.shape[2] == logcnt.max()
    check_plan(w, phy2log, log2phy, logcnt, 288, 32,
               width=int(logcnt.max()))


def test_sglang_window_equals_its_sum():
    frames = [seeded_loads(s, 58, 256) for s in (31, 32, 33)]
    logical_count = torch.tensor(np.stack(frames)).to(torch.int32)
    outs = sglang_call(logical_count, EplbAlgorithm.deepseek_hierarchical)
    total = np.sum(frames, axis=0)
    check_sglang(total, outs)
    ref = fresh(total, **DEEPSEEK)
    np.testing.assert_array_equal(outs[0].numpy(), ref.phy2log)
    two_d = sglang_call(torch.tensor(total).to(torch.int32),
                        EplbAlgorithm.deepseek_hierarchical)
    for a, b in zip(outs, two_d):
        assert torch.equal(a, b)


def test_sglang_algorithm_picks_the_policy():
    w = seeded_loads(34, 58, 256)
    t = torch.tensor(w).to(torch.int32).unsqueeze(0)
    glob = fresh(w, 288, 1, 1, 32, policy="global").phy2log
    hier = fresh(w, **DEEPSEEK).phy2log
    for alg, ref in ((EplbAlgorithm.deepseek, glob), ("deepseek_vec", glob),
                     (EplbAlgorithm.deepseek_hierarchical, hier),
                     ("deepseek_vec_hierarchical", hier)):
        outs = sglang_call(t, alg)
        check_sglang(w, outs)
        np.testing.assert_array_equal(outs[0].numpy(), ref)
    with pytest.raises(NotImplementedError):
        sglang_call(t, "no_such_algorithm")


def test_sglang_global_without_groups():
    w = seeded_loads(35, 4, 64)
    outs = eplb_sglang.rebalance_experts(
        torch.tensor(w).to(torch.int32).unsqueeze(0), 80, 10, None, 1,
        EplbAlgorithm.deepseek)
    assert tuple(outs[0].shape) == (4, 80)


def test_sglang_dead_ranks_get_no_expert():
    w = seeded_loads(36, 58, 256)
    active = torch.ones(32, dtype=torch.int32)
    active[5] = 0
    outs = sglang_call(torch.tensor(w).to(torch.int32).unsqueeze(0),
                       EplbAlgorithm.elasticity_aware, active_ranks=active)
    phy2log = outs[0].numpy()
    assert (phy2log[:, 45:54] == -1).all()
    check_plan(w, phy2log, outs[1].numpy(), outs[2].numpy(), 288, 32,
               mask=active.numpy(), width=int(outs[2].max()))
    broken = 1 - active
    again = sglang_call(torch.tensor(w).to(torch.int32).unsqueeze(0),
                        EplbAlgorithm.elasticity_aware, broken_ranks=broken)
    assert torch.equal(again[0], outs[0])


def test_sglang_install_replaces_the_dispatcher(monkeypatch):
    names = ["sglang", "sglang.srt", "sglang.srt.eplb",
             "sglang.srt.eplb.eplb_algorithms"]
    mods = {n: types.ModuleType(n) for n in names}
    for parent, child in zip(names, names[1:]):
        setattr(mods[parent], child.rsplit(".", 1)[1], mods[child])
    mods[names[-1]].rebalance_experts = None
    for n, m in mods.items():
        monkeypatch.setitem(sys.modules, n, m)
    eplb_sglang.install()
    assert mods[names[-1]].rebalance_experts is eplb_sglang.rebalance_experts
