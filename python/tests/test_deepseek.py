"""DeepSeek's contract (eplb.py's rebalance_experts), the Context API
around it (re-planning, masks, metrics) and the per-thread contexts."""

import threading

import numpy as np
import pytest

import eplb_cl
from conftest import (DEEPSEEK, DETERMINISTIC, GOLDEN_LOGCNT,
                      GOLDEN_PHY2LOG, GOLDEN_WEIGHT, check_plan,
                      seeded_loads)


@pytest.fixture(autouse=True)
def deterministic_reference():
    # The convenience functions plan with configure()'s options.
    eplb_cl.configure(backend="reference", **DETERMINISTIC)
    yield
    eplb_cl.configure(backend=None, candidates=None, swap_rounds=None)


def check_deepseek_outputs(weight, outs, num_replicas, num_gpus):
    phy2log, log2phy, logcnt = (np.asarray(o) for o in outs)
    for o in (phy2log, log2phy, logcnt):
        assert o.dtype == np.int64
    # eplb.py pads log2phy to logcnt.max(), the largest replica count.
    assert log2phy.shape[2] == logcnt.max()
    check_plan(weight, phy2log, log2phy, logcnt, num_replicas, num_gpus,
               width=int(logcnt.max()))


def test_golden_case_numpy():
    outs = eplb_cl.rebalance_experts(np.array(GOLDEN_WEIGHT), 16, 4, 2, 8)
    assert all(isinstance(o, np.ndarray) for o in outs)
    np.testing.assert_array_equal(outs[0], GOLDEN_PHY2LOG)
    np.testing.assert_array_equal(outs[2], GOLDEN_LOGCNT)
    assert outs[1].shape == (2, 12, 2)
    check_deepseek_outputs(GOLDEN_WEIGHT, outs, 16, 8)


def test_deepseek_shape_and_padding():
    w = seeded_loads(1, 58, 256)
    outs = eplb_cl.rebalance_experts(w, **DEEPSEEK)
    assert outs[0].shape == (58, 288) and outs[2].shape == (58, 256)
    check_deepseek_outputs(w, outs, 288, 32)


def test_integer_and_float_inputs_give_the_same_plan():
    w = seeded_loads(2, 8, 64)
    ref = eplb_cl.rebalance_experts(w, 80, 8, 2, 8)
    for dtype in (np.int32, np.int64, np.uint16, np.float64, np.float32):
        outs = eplb_cl.rebalance_experts(w.astype(dtype), 80, 8, 2, 8)
        for a, b in zip(outs, ref):
            np.testing.assert_array_equal(a, b)
    lists = eplb_cl.rebalance_experts(w.astype(int).tolist(), 80, 8, 2, 8)
    np.testing.assert_array_equal(lists[0], ref[0])


def test_torch_in_torch_out():
    torch = pytest.importorskip("torch", reason="torch is not installed "
                                "(Debian: python3-torch)")
    # Counts up to 256: exact in every dtype, bfloat16's 8 bits included.
    w = np.random.default_rng(3).integers(1, 257, (8, 64)).astype(np.float32)
    ref = eplb_cl.rebalance_experts(w, 80, 8, 2, 8)
    for dtype in (torch.int32, torch.int64, torch.float16, torch.bfloat16,
                  torch.float32, torch.float64):
        t = torch.tensor(w).to(dtype)
        outs = eplb_cl.rebalance_experts(t, 80, 8, 2, 8)
        for o, r in zip(outs, ref):
            assert isinstance(o, torch.Tensor)
            assert o.dtype == torch.int64 and o.device == t.device
            np.testing.assert_array_equal(o.numpy(), r)


def test_all_zero_loads_give_a_valid_plan():
    w = np.zeros((4, 32), np.int32)
    outs = eplb_cl.rebalance_experts(w, 40, 4, 2, 8)
    check_deepseek_outputs(w, outs, 40, 8)


def test_global_policy_when_groups_dont_split_over_nodes():
    w = seeded_loads(4, 3, 24)
    outs = eplb_cl.rebalance_experts(w, 36, 4, 3, 6)  # 4 % 3 != 0
    with eplb_cl.Context(backend="reference", policy="global",
                         **DETERMINISTIC) as ctx:
        plan = ctx.rebalance(w, 36, 1, 1, 6)
    np.testing.assert_array_equal(outs[0], plan.phy2log)


def test_replan_from_current_keeps_the_contract():
    w = seeded_loads(5, 16, 64)
    nxt = w * seeded_loads(6, 16, 64) / 100
    with eplb_cl.Context(backend="reference", tolerance=0.05) as ctx:
        current = ctx.rebalance(w, 80, 8, 2, 8).phy2log
        fresh = ctx.rebalance(nxt, 80, 8, 2, 8)
        plan = ctx.rebalance(nxt, 80, 8, 2, 8, current=current)
    check_plan(nxt, *plan, 80, 8)
    q = eplb_cl.quality(nxt, plan.phy2log, plan.logcnt, 8, 2, 8)
    qf = eplb_cl.quality(nxt, fresh.phy2log, fresh.logcnt, 8, 2, 8)
    assert q.balancedness_worst >= (1 - 0.05) * qf.balancedness_worst - 1e-9
    total, per_gpu = eplb_cl.copies(current, plan.phy2log, 64, 8)
    assert per_gpu.shape == (8,) and per_gpu.sum() == total
    assert eplb_cl.copies(current, current, 64, 8)[0] == 0


def test_mask_leaves_dead_gpus_empty():
    w = seeded_loads(7, 4, 32)
    mask = np.array([1, 1, 0, 1, 1, 1, 1, 1], bool)
    with eplb_cl.Context(backend="reference") as ctx:
        plan = ctx.rebalance(w, 48, 4, 2, 8, mask=mask)
    check_plan(w, *plan, 48, 8, mask=mask)
    assert (plan.logcnt.sum(axis=1) == 42).all()


def test_contexts_are_kept_per_thread():
    w = seeded_loads(8, 8, 64)
    results, contexts = {}, {}

    def work(i):
        contexts[i] = eplb_cl._threads.context()
        results[i] = eplb_cl.rebalance_experts(w, 80, 8, 2, 8)[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in contexts.values()}) == 3
    for r in results.values():
        np.testing.assert_array_equal(r, results[0])
    assert eplb_cl._threads.context() is eplb_cl._threads.context()


def test_a_context_refuses_a_second_thread():
    ctx = eplb_cl.Context(backend="reference")
    ctx._lock.acquire()  # as if another thread were inside the call
    try:
        with pytest.raises(RuntimeError, match="one Context per thread"):
            ctx.rebalance(GOLDEN_WEIGHT, 16, 4, 2, 8)
    finally:
        ctx._lock.release()
    ctx.close()
    with pytest.raises(ValueError, match="closed"):
        ctx.rebalance(GOLDEN_WEIGHT, 16, 4, 2, 8)


def test_quality_of_the_golden_plan():
    q = eplb_cl.quality(GOLDEN_WEIGHT, GOLDEN_PHY2LOG, GOLDEN_LOGCNT, 4, 2,
                        8)
    assert 0 < q.balancedness_worst <= q.balancedness_mean <= 1
    assert q.balancedness_mean <= q.bound_mean + 1e-12
    assert q.worst_layer in (0, 1)


def test_drop_in_outputs_are_the_callers():
    # The drop-ins plan into the context's scratch arrays: what they return
    # must be copies that the next call leaves alone.
    a = seeded_loads(9, 8, 64)
    first = eplb_cl.rebalance_experts(a, 80, 8, 2, 8)
    kept = [o.copy() for o in first]
    eplb_cl.rebalance_experts(seeded_loads(10, 8, 64), 80, 8, 2, 8)
    for o, k in zip(first, kept):
        np.testing.assert_array_equal(o, k)


def test_out_arrays_are_checked():
    with eplb_cl.Context(backend="reference") as ctx:
        out = ctx.scratch(2, 12, 16)
        plan = ctx.rebalance(GOLDEN_WEIGHT, 16, 4, 2, 8, out=out)
        assert plan.phy2log is out.phy2log
        bad = eplb_cl.Plan(out.phy2log.astype(np.int64), out.log2phy,
                           out.logcnt)
        with pytest.raises(ValueError, match="out.phy2log"):
            ctx.rebalance(GOLDEN_WEIGHT, 16, 4, 2, 8, out=bad)
