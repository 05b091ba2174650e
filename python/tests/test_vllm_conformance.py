"""EplbClPolicy behaves as vLLM's DefaultEplbPolicy where vLLM's own tests
(tests/distributed/test_eplb_algo.py) look: eplb.py's global fallback,
AssertionErrors for shapes that do not divide, preserve_intragpu_slots,
the newer policy forms and the connector hook, and old maps with -1
slots. The cases are this package's own; python/tools/run_vllm_tests.py
runs vLLM's file itself."""

import os
import subprocess
import sys
import textwrap
import types
import warnings

import numpy as np
import pytest

import eplb_cl
from eplb_cl import vllm as eplb_vllm
from conftest import DETERMINISTIC, GOLDEN_PHY2LOG, GOLDEN_WEIGHT

torch = pytest.importorskip("torch", reason="torch is not installed "
                            "(Debian: python3-torch); vLLM passes tensors")

Policy = eplb_vllm.EplbClPolicy
HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.dirname(HERE)


@pytest.fixture(autouse=True)
def deterministic_reference():
    eplb_cl.configure(backend="reference", **DETERMINISTIC)
    yield
    eplb_cl.configure(backend=None, candidates=None, swap_rounds=None)


def fresh(w, P, G, N, M, **kw):
    with eplb_cl.Context(backend="reference", **DETERMINISTIC, **kw) as c:
        return c.rebalance(w, P, G, N, M)


def gpu_sets(phy2log, num_gpus):
    p = np.asarray(phy2log)
    S = p.shape[1] // num_gpus
    return [[sorted(row[g * S:(g + 1) * S].tolist()) for g in range(num_gpus)]
            for row in p]


# ---- the global fallback and the errors ----

def test_groups_that_do_not_split_over_nodes_plan_globally():
    # 3 % 2 != 0: num_groups is ignored, even though 3 does not divide the
    # 4 experts (the library alone refuses that shape).
    w = torch.tensor([[10, 20, 30, 40]])
    new = Policy.rebalance_experts(w, 8, 3, 2, 4)
    assert new.dtype == torch.int64 and tuple(new.shape) == (1, 8)
    np.testing.assert_array_equal(
        new.numpy(), fresh(w.numpy(), 8, 1, 1, 4, policy="global").phy2log)
    # The drop-in for eplb.py follows the same rule.
    outs = eplb_cl.rebalance_experts(w.numpy(), 8, 3, 2, 4)
    np.testing.assert_array_equal(outs[0], new.numpy())
    with pytest.raises(eplb_cl.EplbError, match="GROUPS_DONT_DIVIDE"):
        fresh(w.numpy(), 8, 3, 2, 4)


@pytest.mark.parametrize("args,name", [
    ((7, 2, 2, 4), "EPLB_ERR_GPUS_DONT_DIVIDE"),   # 7 slots on 4 GPUs
    ((8, 3, 1, 4), "EPLB_ERR_GROUPS_DONT_DIVIDE"),  # 3 groups of 4 experts
    ((2, 1, 1, 2), "EPLB_ERR_TOO_FEW_REPLICAS"),
    ((8, 2, 2, 0), "EPLB_ERR_ZERO_SIZE"),
])
def test_shape_errors_are_assertion_errors(args, name):
    w = torch.tensor([[10, 20, 30, 40]])
    for call in (lambda: Policy.rebalance_experts(w, *args),
                 lambda: eplb_cl.rebalance_experts(w, *args)):
        with pytest.raises(AssertionError) as info:
            call()
        err = info.value
        assert isinstance(err, eplb_cl.EplbError)
        assert isinstance(err, eplb_cl.EplbAssertionError)
        assert err.name == name and err.detail


def test_the_context_api_keeps_plain_eplb_errors():
    with eplb_cl.Context(backend="reference") as c:
        with pytest.raises(eplb_cl.EplbError) as info:
            c.rebalance([[10.0, 20.0, 30.0, 40.0]], 7, 2, 2, 4)
    assert not isinstance(info.value, AssertionError)


def test_nodes_zero_is_an_error_not_a_division_by_zero():
    with pytest.raises(AssertionError, match="ZERO_SIZE"):
        Policy.rebalance_experts(torch.tensor([[1, 2, 3, 4]]), 8, 2, 0, 4)


def test_golden_plan_through_the_policy():
    new = Policy.rebalance_experts(torch.tensor(GOLDEN_WEIGHT), 16, 4, 2, 8)
    np.testing.assert_array_equal(new.numpy(), GOLDEN_PHY2LOG)


# ---- preserve_intragpu_slots ----

def test_preserve_keeps_old_slots_and_fills_the_rest_in_order():
    # GPU 0: old [0 1 2 3], new [1 5 0 4]: 0 and 1 go back to slots 0 and
    # 1; 5 and 4, new to the GPU, fill slots 2 and 3 in their order.
    # GPU 1: old [4 5 6 7], new [6 2 7 3]: 6 and 7 keep slots 2 and 3, and
    # 2 and 3 fill slots 0 and 1.
    old = np.array([[0, 1, 2, 3, 4, 5, 6, 7]])
    new = np.array([[1, 5, 0, 4, 6, 2, 7, 3]])
    post = Policy.preserve_intragpu_slots(new, 2, old)
    np.testing.assert_array_equal(post, [[0, 1, 5, 4, 2, 3, 6, 7]])
    assert gpu_sets(post, 2) == gpu_sets(new, 2)
    np.testing.assert_array_equal(new, [[1, 5, 0, 4, 6, 2, 7, 3]])  # input


def test_preserve_with_copies_and_empty_slots():
    # GPU 0: old [0 -1 0 2 3], new [0 5 4 0 1]: expert 0, kept twice,
    # keeps both old slots (0 and 2); the -1 (empty) slot and the slots of
    # experts that left take 5, 4 and 1 in their order.
    # GPU 1: old [4 5 6 1 2], new [6 2 3 2 1]: 6, 1 and one 2 keep slots
    # 2, 3 and 4; 3 and the other 2 fill slots 0 and 1.
    old = np.array([[0, -1, 0, 2, 3, 4, 5, 6, 1, 2]])
    new = np.array([[0, 5, 4, 0, 1, 6, 2, 3, 2, 1]])
    post = Policy.preserve_intragpu_slots(new, 2, old)
    np.testing.assert_array_equal(post, [[0, 5, 0, 4, 1, 3, 2, 6, 1, 2]])
    assert gpu_sets(post, 2) == gpu_sets(new, 2)


def test_preserve_every_layer_and_random_maps():
    rng = np.random.default_rng(5)
    for _ in range(200):
        M, S, E, L = (int(rng.integers(1, 5)), int(rng.integers(1, 6)),
                      int(rng.integers(1, 9)), int(rng.integers(1, 4)))
        old = rng.integers(-1, E, (L, M * S))
        new = rng.integers(0, E, (L, M * S))
        post = Policy.preserve_intragpu_slots(new, M, old)
        assert gpu_sets(post, M) == gpu_sets(new, M)
        for layer in range(L):
            for g in range(M):
                o = old[layer, g * S:(g + 1) * S]
                n = new[layer, g * S:(g + 1) * S].tolist()
                p = post[layer, g * S:(g + 1) * S]
                # As many old slots keep their expert as the two multisets
                # share, and each expert that stays keeps its first slot.
                shared = sum(min(n.count(e), o.tolist().count(e))
                             for e in set(n))
                assert int((p == o).sum()) == shared
                for e in set(n) & set(o.tolist()):
                    assert p[o.tolist().index(e)] == e


def test_preserve_types_and_no_ops():
    old = torch.tensor([[0, 1, 2, 3]])
    new = torch.tensor([[1, 0, 3, 2]], dtype=torch.int32)
    post = Policy.preserve_intragpu_slots(new, 2, old)
    assert isinstance(post, torch.Tensor) and post.dtype == torch.int32
    assert post.tolist() == [[0, 1, 2, 3]]
    assert Policy.preserve_intragpu_slots(new, 3, old) is new  # 4 % 3
    assert Policy.preserve_intragpu_slots(new, 0, old) is new
    wider = torch.tensor([[0, 1, 2, 3, 0, 1]])
    assert Policy.preserve_intragpu_slots(new, 2, wider) is new


def test_experts_staying_on_a_gpu_keep_their_slots():
    from conftest import seeded_loads
    w = seeded_loads(50, 8, 64)
    old = fresh(seeded_loads(51, 8, 64), 80, 8, 2, 8).phy2log
    new = Policy.rebalance_experts(torch.tensor(w).to(torch.int32), 80, 8,
                                   2, 8, torch.tensor(old)).numpy()
    for layer in range(8):
        for g in range(8):
            o = old[layer, g * 10:(g + 1) * 10].tolist()
            n = new[layer, g * 10:(g + 1) * 10].tolist()
            for e in set(o) & set(n):
                assert n[o.index(e)] == e


# ---- the newer forms ----

def context(window, old=None, P=80, G=8, N=2, M=8):
    return types.SimpleNamespace(
        load_window_cpu=window, physical_to_logical_map_cpu=old,
        num_replicas=P, cpu_group=None,
        topology=types.SimpleNamespace(num_groups=G, num_nodes=N,
                                       num_ranks=M))


def test_instance_forms_take_a_context_and_return_a_plan():
    from conftest import seeded_loads
    frames = np.stack([seeded_loads(s, 8, 64) for s in (52, 53)])
    window = torch.tensor(frames).to(torch.int32)
    want = fresh(frames.sum(axis=0), 80, 8, 2, 8).phy2log
    policy = Policy()
    for plan in (policy.rebalance_experts(context(window), object()),
                 policy.rebalance_experts(context=context(window),
                                          policy_state=None),
                 policy.plan_rebalance(context(window)),
                 policy.plan_rebalance(context(window), object())):
        p2l = plan.physical_to_logical_map
        assert isinstance(p2l, torch.Tensor)
        assert p2l.dtype == torch.int64 and p2l.device.type == "cpu"
        np.testing.assert_array_equal(p2l.numpy(), want)
    assert policy.on_layer_committed(None, None, 0) is None


def test_connector_supplies_the_policy():
    c = eplb_vllm.EplbClConnector({"connector": "EplbClConnector"})
    assert eplb_vllm.EplbClConnector.placement_policy(None) is Policy
    assert eplb_vllm.EplbClConnector.routing_capabilities(None) is None
    assert eplb_vllm.EplbClConnector.inapplicable_reason(None, 0) is None
    assert c.bind_routing(ep_size=2, ep_rank=0) is None
    c.shutdown()
    assert c.routing is None


FAKE_VLLM = {
    "vllm/__init__.py": "",
    "vllm/distributed/__init__.py": "",
    "vllm/distributed/eplb/__init__.py": "",
    "vllm/distributed/eplb/policy/__init__.py": textwrap.dedent("""\
        from .abstract import AbstractEplbPolicy, EplbPlan
        EPLB_POLICIES = {"default": AbstractEplbPolicy}
        """),
    "vllm/distributed/eplb/connector.py": textwrap.dedent("""\
        from abc import ABC, abstractmethod
        class EplbConnectorBase(ABC):
            def __init__(self, eplb_config):
                self.eplb_config = eplb_config
                self.routing = None
            @classmethod
            def placement_policy(cls, eplb_config):
                return None
            @abstractmethod
            def bind_routing(self, **kwargs):
                raise NotImplementedError
        """),
}
ABSTRACT_PLAN_REBALANCE = textwrap.dedent("""\
    from abc import ABC, abstractmethod
    from dataclasses import dataclass
    @dataclass(frozen=True)
    class EplbPlan:
        physical_to_logical_map: object
    class AbstractEplbPolicy(ABC):
        def create_state(self, num_moe_layers):
            return "state"
        @abstractmethod
        def plan_rebalance(self, context, policy_state):
            raise NotImplementedError
    """)
ABSTRACT_INSTANCE_REBALANCE = ABSTRACT_PLAN_REBALANCE.replace(
    "plan_rebalance", "rebalance_experts")


def run_with_fake_vllm(tmp_path, abstract, code):
    for path, text in dict(FAKE_VLLM, **{
            "vllm/distributed/eplb/policy/abstract.py": abstract}).items():
        f = tmp_path / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), PACKAGE_DIR]))
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


CHECK_FORMS = """\
    import os, types, torch, numpy as np, eplb_cl
    os.environ["EPLB_CL_VLLM_DEFAULT"] = "1"
    from eplb_cl.vllm import EplbClConnector, EplbClPolicy, register
    from vllm.distributed.eplb.connector import EplbConnectorBase
    from vllm.distributed.eplb.policy import EPLB_POLICIES
    from vllm.distributed.eplb.policy.abstract import (AbstractEplbPolicy,
                                                       EplbPlan)
    eplb_cl.configure(backend="reference", candidates=1, swap_rounds=0)
    assert issubclass(EplbClPolicy, AbstractEplbPolicy)
    assert issubclass(EplbClConnector, EplbConnectorBase)
    policy = EplbClPolicy()  # no abstract method left
    assert policy.create_state(3) == "state"
    ctx = types.SimpleNamespace(
        load_window_cpu=torch.tensor([[[90, 132, 40, 61, 104, 165, 39, 4,
                                        73, 56, 183, 86]]]),
        physical_to_logical_map_cpu=None, num_replicas=16,
        topology=types.SimpleNamespace(num_groups=4, num_nodes=2,
                                       num_ranks=8))
    for plan in (policy.plan_rebalance(ctx, None),
                 policy.rebalance_experts(ctx, None)):
        assert type(plan) is EplbPlan
        assert plan.physical_to_logical_map.tolist() == [
            [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1]]
    connector = EplbClConnector("config")
    assert connector.eplb_config == "config"
    assert EplbClConnector.placement_policy("config") is EplbClPolicy
    register()
    assert EPLB_POLICIES["eplb_cl"] is EplbClPolicy
    assert EPLB_POLICIES["default"] is EplbClPolicy
    print("ok")
    """


@pytest.mark.parametrize("abstract", [ABSTRACT_PLAN_REBALANCE,
                                      ABSTRACT_INSTANCE_REBALANCE],
                         ids=["plan_rebalance", "rebalance_experts"])
def test_against_vllms_abstract_forms(tmp_path, abstract):
    assert run_with_fake_vllm(tmp_path, abstract, CHECK_FORMS).strip() == \
        "ok"


# ---- old maps with -1 ----

def test_scale_up_map_with_empty_slots_seeds_the_replan():
    # 6 GPUs now; the old map filled the first 4 (every expert there), the
    # new GPUs' slots hold -1: a re-plan from it, -1 as empty slots.
    from conftest import seeded_loads
    w = seeded_loads(60, 4, 16)
    old = np.full((4, 24), -1, np.int64)
    old[:, :16] = np.arange(16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = Policy.rebalance_experts(torch.tensor(w), 24, 4, 2, 6,
                                       torch.tensor(old)).numpy()
    with eplb_cl.Context(backend="reference", **DETERMINISTIC) as c:
        replan = c.rebalance(w, 24, 4, 2, 6, current=old).phy2log
    np.testing.assert_array_equal(
        new, Policy.preserve_intragpu_slots(replan, 6, old))
    # Experts that stayed on a GPU kept their slot.
    for layer in range(4):
        for slot in range(16):
            e = old[layer, slot]
            g = slot // 4
            if e in new[layer, g * 4:(g + 1) * 4]:
                assert new[layer, slot] == e
    assert ((new >= 0) & (new < 16)).all()


def test_layers_the_old_map_cannot_seed_are_planned_afresh():
    from conftest import seeded_loads
    w = seeded_loads(61, 4, 16)
    base = fresh(seeded_loads(62, 4, 16), 24, 4, 2, 6).phy2log
    old = base.copy()
    old[1, :] = -1          # layer 1: every slot empty
    old[2, old[2] == 7] = -1  # layer 2: expert 7 in no slot
    with pytest.warns(UserWarning, match="in no slot in 2 of 4 layers"):
        new = Policy.rebalance_experts(w, 24, 4, 2, 6, old)
    with eplb_cl.Context(backend="reference", **DETERMINISTIC) as c:
        seeded = c.rebalance(w[[0, 3]], 24, 4, 2, 6,
                             current=old[[0, 3]]).phy2log
        scratch = c.rebalance(w[[1, 2]], 24, 4, 2, 6).phy2log
    want = np.empty_like(base)
    want[[0, 3]] = seeded
    want[[1, 2]] = scratch
    np.testing.assert_array_equal(
        new, Policy.preserve_intragpu_slots(want, 6, old))


def test_old_map_with_foreign_ids_is_planned_afresh():
    from conftest import seeded_loads
    w = seeded_loads(63, 2, 16)
    old = fresh(w, 24, 4, 2, 6).phy2log.astype(np.int64)
    old[0, 0] = 2 ** 32 + 3  # never read as expert 3
    with pytest.warns(UserWarning, match="ids outside -1..15 in 1 of 2"):
        new = Policy.rebalance_experts(w, 24, 4, 2, 6, old)
    assert ((new >= 0) & (new < 16)).all()


# ---- vLLM's test file through the shim ----

VLLM_STYLE_TEST = '''\
import numpy as np
import torch
from vllm.distributed.eplb.eplb_state import (
    _compute_eplb_load_stats, compute_logical_maps)
from vllm.distributed.eplb.policy.default import DefaultEplbPolicy


def test_substituted():
    from eplb_cl.vllm import EplbClPolicy
    assert DefaultEplbPolicy is EplbClPolicy


def test_plan_and_maps():
    w = torch.tensor([[10, 20, 30, 40, 50, 60]])
    phy2log = DefaultEplbPolicy.rebalance_experts(w, 8, 3, 2, 4)
    log2phy, logcnt = compute_logical_maps(phy2log, 6)
    assert tuple(log2phy.shape) == (1, 6, int(logcnt.max()))
    assert int(logcnt.sum()) == 8


def test_stand_ins():
    log2phy, logcnt = compute_logical_maps(
        torch.tensor([[0, 1, -1, 2, 3, -1, 1]]), 4)
    assert logcnt.tolist() == [[1, 2, 1, 1]]
    assert log2phy.tolist() == [[[0, -1], [1, 6], [3, -1], [4, -1]]]
    avg, top = _compute_eplb_load_stats(
        torch.tensor([[100.0, 0.0], [30.0, 10.0]]))
    assert (avg.item(), top.item()) == (70.0, 130.0)


def test_preserve():
    post = DefaultEplbPolicy.preserve_intragpu_slots(
        np.array([[1, 0, 3, 2]]), 2, np.array([[0, 1, 2, 3]]))
    assert post.tolist() == [[0, 1, 2, 3]]
'''


def test_run_vllm_tests_substitutes_the_policy(tmp_path):
    try:
        import vllm  # noqa: F401
        pytest.skip("vLLM is installed: the stand-ins are not used")
    except ImportError:
        pass
    test_file = tmp_path / "test_eplb_algo.py"
    test_file.write_text(VLLM_STYLE_TEST)
    # A conftest.py beside vLLM's tests imports vLLM: it must not load.
    (tmp_path / "conftest.py").write_text("import vllm.no_such_module\n")
    script = os.path.join(PACKAGE_DIR, "tools", "run_vllm_tests.py")
    env = dict(os.environ, PYTHONPATH=PACKAGE_DIR, PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, script, str(test_file)], env=env,
                       capture_output=True, text=True, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 passed" in r.stdout
