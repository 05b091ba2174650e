"""The SGLang dispatcher: its arguments checked (no ZeroDivisionError, no
silent reshaping of a mask), the dead ranks taken from SGLang's elastic-EP
state when none are passed, and install() rebinding every module that
holds SGLang's function. SGLang is not installed here: its modules are
stand-ins with the names and attributes the dispatcher reads."""

import sys
import types

import numpy as np
import pytest

import eplb_cl
from eplb_cl import sglang as eplb_sglang
from conftest import DETERMINISTIC, check_plan, seeded_loads

torch = pytest.importorskip("torch", reason="torch is not installed "
                            "(Debian: python3-torch); SGLang passes tensors")


@pytest.fixture(autouse=True)
def deterministic_reference():
    eplb_cl.configure(backend="reference", **DETERMINISTIC)
    yield
    eplb_cl.configure(backend=None, candidates=None, swap_rounds=None)


def counts(seed=70, layers=4, experts=32):
    return torch.tensor(seeded_loads(seed, layers, experts)).to(
        torch.int32).unsqueeze(0)


def call(tokens, active_ranks=None, num_local=6, algorithm="deepseek",
         physical=48, **kw):
    # 48 slots, 6 a GPU: 8 GPUs, 2 nodes, 4 groups of 32 experts.
    return eplb_sglang.rebalance_experts(
        tokens, physical, num_local, 4, 2, algorithm,
        active_ranks=active_ranks, **kw)


def refused(argument, match, *args, **kw):
    with pytest.raises(eplb_cl.EplbInputError) as info:
        call(*args, **kw)
    assert info.value.argument == argument
    assert match in str(info.value), str(info.value)
    assert isinstance(info.value, ValueError)


# ---- arguments ----

@pytest.mark.parametrize("ranks,match", [
    (torch.ones(100, dtype=torch.int32), "shape (8,)"),
    (torch.ones((2, 4), dtype=torch.int32), "shape (8,)"),
    (torch.ones(8), "boolean or integer"),
    (np.array(["1"] * 8), "boolean or integer"),
    (torch.tensor([1, 1, 1, 2, 1, 1, 1, 1]), "active_ranks[3] = 2"),
    (torch.zeros(8, dtype=torch.int32), "no usable GPU"),
    (torch.zeros(8, dtype=torch.bool), "no usable GPU"),
])
def test_bad_active_ranks(ranks, match):
    refused("active_ranks", match, counts(), ranks)


def test_bad_broken_ranks():
    refused("broken_ranks", "no usable GPU", counts(),
            broken_ranks=torch.ones(8, dtype=torch.int32))
    refused("broken_ranks", "shape (8,)", counts(),
            broken_ranks=torch.zeros(4, dtype=torch.int32))
    refused("broken_ranks", "leave no usable GPU", counts(),
            active_ranks=torch.tensor([1, 0, 0, 0, 0, 0, 0, 0]),
            broken_ranks=torch.tensor([1, 0, 0, 0, 0, 0, 0, 0]))


def test_local_slots_that_do_not_divide():
    # 48 slots, 5 a GPU: not 9 GPUs and 3 slots lost.
    refused("num_local_physical_experts", "must divide", counts(),
            num_local=5)
    refused("num_local_physical_experts", "positive", counts(), num_local=0)


def test_bool_and_int_ranks_agree():
    live = [1, 1, 0, 1, 1, 1, 1, 1]
    a = call(counts(), torch.tensor(live, dtype=torch.int32))
    b = call(counts(), torch.tensor(live, dtype=torch.bool))
    c = call(counts(), np.array(live, np.int64))
    for x, y, z in zip(a, b, c):
        assert torch.equal(x, y) and torch.equal(x, z)
    assert (a[0][:, 12:18] == -1).all()


def test_hierarchical_elasticity_aware():
    live = torch.tensor([1, 1, 1, 1, 1, 1, 0, 1], dtype=torch.int32)
    outs = call(counts(), live, algorithm="elasticity_aware_hierarchical")
    assert (outs[0][:, 36:42] == -1).all()
    w = counts()[0].numpy()
    check_plan(w, outs[0].numpy(), outs[1].numpy(), outs[2].numpy(), 48,
               8, mask=live.numpy(), width=int(outs[2].max()))


# ---- the elastic-EP state ----

@pytest.fixture
def elastic_state(monkeypatch):
    """sglang.srt.elastic_ep.elastic_ep with an ElasticEPStateManager
    whose instance() the test sets."""
    names = ["sglang", "sglang.srt", "sglang.srt.elastic_ep",
             "sglang.srt.elastic_ep.elastic_ep"]
    mods = {n: types.ModuleType(n) for n in names}
    for parent, child in zip(names, names[1:]):
        setattr(mods[parent], child.rsplit(".", 1)[1], mods[child])

    class ElasticEPStateManager:
        state = None

        @classmethod
        def instance(cls):
            return cls.state

    mods[names[-1]].ElasticEPStateManager = ElasticEPStateManager
    for n, m in mods.items():
        monkeypatch.setitem(sys.modules, n, m)
    return ElasticEPStateManager


def test_dead_ranks_come_from_the_elastic_state(elastic_state):
    live = torch.tensor([1, 1, 1, 0, 1, 1, 1, 1], dtype=torch.int32)
    elastic_state.state = types.SimpleNamespace(active_ranks=live)
    outs = call(counts(), algorithm="elasticity_aware")
    assert (outs[0][:, 18:24] == -1).all()
    want = call(counts(), live, algorithm="elasticity_aware")
    assert torch.equal(outs[0], want[0])
    # Passed ranks win over the state's.
    passed = call(counts(), torch.ones(8, dtype=torch.int32))
    assert (passed[0] >= 0).all()


def test_the_cpu_copy_is_preferred(elastic_state):
    elastic_state.state = types.SimpleNamespace(
        active_ranks=object(),  # a device tensor in SGLang: not read
        active_ranks_cpu=torch.tensor([0, 1, 1, 1, 1, 1, 1, 1]))
    outs = call(counts())
    assert (outs[0][:, :6] == -1).all()


def test_no_state_means_every_rank_usable(elastic_state):
    elastic_state.state = None
    outs = call(counts())
    assert (outs[0] >= 0).all()


def test_a_bad_state_is_refused_clearly(elastic_state):
    elastic_state.state = types.SimpleNamespace(
        active_ranks=torch.ones(16, dtype=torch.int32))
    refused("active_ranks", "shape (8,)", counts())


# ---- install() ----

def test_install_rebinds_every_holder(monkeypatch):
    names = ["sglang", "sglang.srt", "sglang.srt.eplb",
             "sglang.srt.eplb.eplb_algorithms",
             "sglang.srt.eplb.expert_location"]
    mods = {n: types.ModuleType(n) for n in names}
    for n in names[1:]:
        parent, child = n.rsplit(".", 1)
        setattr(mods[parent], child, mods[n])

    def original(*args, **kw):
        raise AssertionError("SGLang's own dispatcher ran")

    algorithms = mods["sglang.srt.eplb.eplb_algorithms"]
    algorithms.rebalance_experts = original
    # A module that did `from ...eplb_algorithms import rebalance_experts`
    # before install(), and one that keeps it under another name.
    mods["sglang.srt.eplb.expert_location"].rebalance_experts = original
    other = types.ModuleType("some_launcher")
    other.plan_fn = original
    other.unrelated = len
    for n, m in list(mods.items()) + [("some_launcher", other)]:
        monkeypatch.setitem(sys.modules, n, m)

    fn = eplb_sglang.install()
    assert fn is eplb_sglang.rebalance_experts
    assert algorithms.rebalance_experts is fn
    assert mods["sglang.srt.eplb.expert_location"].rebalance_experts is fn
    assert other.plan_fn is fn and other.unrelated is len
    assert eplb_sglang.install.rebound == [
        "sglang.srt.eplb.eplb_algorithms.rebalance_experts",
        "sglang.srt.eplb.expert_location.rebalance_experts",
        "some_launcher.plan_fn"]
    # A second install finds nothing left to rebind.
    eplb_sglang.install()
    assert eplb_sglang.install.rebound == []
    outs = mods["sglang.srt.eplb.expert_location"].rebalance_experts(
        counts(), 48, 6, 4, 2, "deepseek")
    assert tuple(outs[0].shape) == (4, 48)
