"""The migration schedule from Python: Context.rebalance's budgets,
stages, min_gain and schedule=True against a numpy recomputation of every
stage, the ctypes mirror of eplb_request / eplb_stage / eplb_schedule,
the refusals, and the vLLM adapter's min_gain and layer order."""

import ctypes
import math
import os
import re
import sys
import types

import numpy as np
import pytest

import eplb_cl
from eplb_cl import _lib
from eplb_cl import vllm as eplb_vllm
from conftest import DETERMINISTIC, check_plan, seeded_loads

# (layers, experts, P, G, N, M)
SHAPES = [
    (3, 256, 288, 8, 4, 32),  # DeepSeek's prefill, hierarchical
    (4, 64, 80, 8, 1, 8),     # one node, 10 slots per GPU
    (4, 48, 60, 6, 4, 12),
]


def header_text():
    root = os.environ.get("EPLB_TEST_SRCDIR",
                          os.path.join(os.path.dirname(__file__), "..", ".."))
    with open(os.path.join(root, "include", "eplb_cl.h")) as f:
        return f.read()


@pytest.fixture
def ctx():
    with eplb_cl.Context(backend="reference", **DETERMINISTIC) as c:
        yield c


def loads(shape, seed, drift):
    """w0 (what the plan in service was made for) and w1: w0 drifted by
    up to `drift`, or unrelated loads for drift None."""
    L, E = shape[:2]
    w0 = seeded_loads(seed, L, E)
    if drift is None:
        return w0, seeded_loads(seed + 500, L, E)
    rng = np.random.default_rng(seed + 1000)
    return w0, (w0 * rng.uniform(1 - drift, 1 + drift, w0.shape)).astype(
        np.float32)


def gpu_loads(weight, phy2log, num_gpus):
    """[L, M] float64: sum over a GPU's slots of load[e] / count[e]."""
    w = np.asarray(weight, np.float64)
    p = np.asarray(phy2log)
    L, E = w.shape
    out = np.zeros((L, num_gpus))
    S = p.shape[1] // num_gpus
    for l in range(L):
        live = p[l] >= 0
        cnt = np.bincount(p[l][live], minlength=E)
        share = np.where(live, w[l][np.maximum(p[l], 0)]
                         / np.maximum(cnt[np.maximum(p[l], 0)], 1), 0.0)
        out[l] = share.reshape(num_gpus, S).sum(axis=1)
    return out


def objective(weight, phy2log, num_gpus, mask=None):
    g = gpu_loads(weight, phy2log, num_gpus)
    if mask is not None:
        g = g[:, np.asarray(mask) != 0]
    return float(g.max(axis=1).sum())


def check_schedule(shape, weight, current, plan, sched, per_stage,
                   mask=None):
    """Every stage a valid plan whose record is true to it, the objective
    non-increasing from stage 1, at most per_stage copies per GPU in a
    stage (0: no bound), and the last stage the plan returned."""
    L, E, P, G, N, M = shape
    assert sched.stage_of_slot.shape == (L, P)
    assert sched.stage_of_slot.dtype == np.int32
    assert sched.stages.dtype == eplb_cl.STAGE_DTYPE
    assert len(sched.stages) == sched.num_stages + 1
    assert ((sched.stage_of_slot >= 0)
            & (sched.stage_of_slot <= sched.num_stages)).all()
    assert sched.layer_gain.shape == (L,) and sched.layer_gain.dtype == \
        np.float64
    assert sched.layer_copies.shape == (L,) and \
        sched.layer_copies.dtype == np.int32
    assert sorted(sched.layer_order.tolist()) == list(range(L))
    assert (sched.layer_gain >= 0).all()
    live = np.ones(P, bool) if mask is None else np.repeat(
        np.asarray(mask) != 0, P // M)
    last = math.inf
    prev = np.zeros(M, np.int64)
    for k in range(sched.num_stages + 1):
        p = sched.phy2log_after(k)
        rec = sched.stages[k]
        if k == 0:
            np.testing.assert_array_equal(p, current)
        if k == 0 and mask is not None:
            continue  # the plan in service still holds the dead GPUs
        if (current[:, live] >= 0).all():
            assert (p[:, live] >= 0).all(), "a live slot left empty"
        for l in range(L):
            row = p[l][live]
            assert (np.bincount(row[row >= 0], minlength=E) >= 1).all(), \
                "stage %d: an expert lost its last slot in layer %d" % (k, l)
        assert (p[:, ~live] == -1).all()
        obj = objective(weight, p, M, mask)
        assert obj == pytest.approx(float(rec["objective"]), rel=1e-9)
        if k >= 1:
            assert obj <= last * (1 + 1e-12), "the objective rose"
            last = obj
            _, now = eplb_cl.copies(current, p, E, M)
            most = int((now - prev).max())
            assert most == int(rec["max_copies_per_gpu"])
            if per_stage and not (mask is not None and k == 1):
                assert most <= per_stage
            prev = now
    assert int(sched.stages["copies"][1:].sum()) == sched.copies
    np.testing.assert_array_equal(sched.phy2log_after(sched.num_stages),
                                  plan.phy2log)
    np.testing.assert_array_equal(sched.phy2log, plan.phy2log)
    assert sched.objective_after == pytest.approx(
        float(sched.stages[-1]["objective"]), rel=1e-12)
    assert sched.objective_after <= sched.objective_before * (1 + 1e-12)
    if mask is None:
        assert sched.objective_before == pytest.approx(
            objective(weight, current, M), rel=1e-9)
    total, _ = eplb_cl.copies(current, plan.phy2log, E, M)
    assert total == sched.copies


# ---- the ctypes mirror ----

def test_request_mirrors_the_c_struct():
    # eplb_request_default writes its own sizeof: a buffer with room to
    # spare, then byte for byte the Python defaults.
    buf = ctypes.create_string_buffer(b"\xa5" * 512, 512)
    _lib.lib().eplb_request_default(buf)
    n = ctypes.sizeof(_lib.Request)
    req = _lib.Request.from_buffer_copy(buf.raw[:n])
    assert req.struct_size == n
    assert buf.raw[n:n + 8] == b"\xa5" * 8, "the C struct is larger"
    assert bytes(_lib.Request.new()) == buf.raw[:n]
    assert (req.max_copies_per_gpu, req.max_copies,
            req.stage_copies_per_gpu, req.min_gain, req.deadline_us,
            req.schedule) == (-1, -1, 0, eplb_cl.MIN_GAIN_DEFAULT, 0.0, None)


def test_min_gain_default_is_the_headers():
    m = re.search(r"#define EPLB_MIN_GAIN_DEFAULT ([0-9.eE+-]+)f?\b",
                  header_text())
    assert m, "no EPLB_MIN_GAIN_DEFAULT in the header"
    assert eplb_cl.MIN_GAIN_DEFAULT == float(np.float32(m.group(1)))


def test_stage_dtype_mirrors_eplb_stage():
    assert eplb_cl.STAGE_DTYPE.itemsize == ctypes.sizeof(_lib.Stage)
    for name, *_ in _lib.Stage._fields_:
        assert eplb_cl.STAGE_DTYPE.fields[name][1] == getattr(
            _lib.Stage, name).offset


def test_schedule_struct_size_is_the_libraries(ctx):
    # The library takes sizeof(CSchedule) and refuses one byte more.
    w0, w1 = loads(SHAPES[1], 3, 0.2)
    cur = ctx.rebalance(w0, *SHAPES[1][2:]).phy2log.copy()
    shape = _lib.Shape(*SHAPES[1])
    out = [np.full(n, 77, np.int32) for n in
           (4 * 80, 4 * 64 * 17, 4 * 64)]
    for size, rc in ((ctypes.sizeof(_lib.CSchedule), 0),
                     (ctypes.sizeof(_lib.CSchedule) + 1, -11)):
        sc = _lib.CSchedule(struct_size=size, num_stages=-5)
        req = _lib.Request.new()
        req.current_phy2log = cur.ctypes.data
        req.schedule = ctypes.addressof(sc)
        got = _lib.lib().eplb_plan(ctx._handle(), ctypes.byref(shape),
                                   w1.ctypes.data, ctypes.byref(req),
                                   *(a.ctypes.data for a in out))
        assert got == rc, _lib.lib().eplb_last_error()
        assert (sc.num_stages >= 0) == (rc == 0)


# ---- round trips ----

@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("drift", [0.2, None], ids=["drift", "unrelated"])
@pytest.mark.parametrize("per_stage", [0, 1, 3])
def test_stages_round_trip(ctx, shape, drift, per_stage):
    P, G, N, M = shape[2:]
    w0, w1 = loads(shape, 10 + shape[0], drift)
    cur = ctx.rebalance(w0, P, G, N, M).phy2log.copy()
    plan, sched = ctx.rebalance(w1, P, G, N, M, current=cur,
                                stage_copies_per_gpu=per_stage,
                                schedule=True)
    check_plan(w1, *plan, P, M)
    check_schedule(shape, w1, cur, plan, sched, per_stage)
    assert sched.num_stages >= 1 and sched.copies > 0
    if per_stage == 0:
        assert sched.num_stages == 1


@pytest.mark.parametrize("budget", [1, 2, 5])
def test_budgets(ctx, budget):
    shape = SHAPES[0]
    L, E, P, G, N, M = shape
    w0, w1 = loads(shape, 20, 0.3)
    cur = ctx.rebalance(w0, P, G, N, M).phy2log.copy()
    plan, sched = ctx.rebalance(w1, P, G, N, M, current=cur,
                                max_copies_per_gpu=budget,
                                max_copies=np.int64(10 * budget),
                                stage_copies_per_gpu=1, schedule=True)
    check_plan(w1, *plan, P, M)
    check_schedule(shape, w1, cur, plan, sched, 1)
    total, per_gpu = eplb_cl.copies(cur, plan.phy2log, E, M)
    assert (per_gpu <= budget).all()
    assert 0 < total <= 10 * budget
    # without schedule=True: the same plan, alone
    again = ctx.rebalance(w1, P, G, N, M, current=cur,
                          max_copies_per_gpu=budget,
                          max_copies=10 * budget, stage_copies_per_gpu=1)
    assert isinstance(again, eplb_cl.Plan)
    np.testing.assert_array_equal(again.phy2log, plan.phy2log)


@pytest.mark.parametrize("budget", [dict(max_copies_per_gpu=0),
                                    dict(max_copies=0),
                                    dict(max_copies_per_gpu=np.int32(0),
                                         max_copies=5)])
def test_a_budget_of_zero_is_the_plan_in_service(ctx, budget):
    shape = SHAPES[1]
    P, G, N, M = shape[2:]
    w0, w1 = loads(shape, 30, 0.3)
    cur = ctx.rebalance(w0, P, G, N, M).phy2log.copy()
    plan, sched = ctx.rebalance(w1, P, G, N, M, current=cur,
                                schedule=True, **budget)
    np.testing.assert_array_equal(plan.phy2log, cur)
    check_plan(w1, *plan, P, M)
    assert sched.num_stages == 0 and sched.copies == 0
    assert (sched.stage_of_slot == 0).all()
    assert sched.objective_after == sched.objective_before
    # the layers' figures are still the whole re-plan's
    assert sched.layer_copies.sum() > 0


def test_min_gain_above_every_layers_gain_keeps_the_plan(ctx):
    shape = SHAPES[0]
    P, G, N, M = shape[2:]
    w0, w1 = loads(shape, 40, 0.2)
    cur = ctx.rebalance(w0, P, G, N, M).phy2log.copy()
    full, sched = ctx.rebalance(w1, P, G, N, M, current=cur, schedule=True)
    assert sched.copies > 0
    peak = gpu_loads(w1, cur, M).max(axis=1)
    most = float((sched.layer_gain / peak).max())
    assert 0 < most < 0.99
    plan, kept = ctx.rebalance(w1, P, G, N, M, current=cur,
                               min_gain=most + 0.001, schedule=True)
    np.testing.assert_array_equal(plan.phy2log, cur)
    assert kept.num_stages == 0 and kept.copies == 0
    # below the largest share some layer moves, and only layers whose
    # share reaches min_gain
    share = sched.layer_gain / peak
    gain = float(np.median(share))
    plan, part = ctx.rebalance(w1, P, G, N, M, current=cur, min_gain=gain,
                               schedule=True)
    moved = (plan.phy2log != cur).any(axis=1)
    assert moved.any()
    assert (share[moved] >= gain * (1 - 1e-6)).all()


@pytest.mark.parametrize("drift", [0.02, 0.3])
def test_min_gain_alone_keeps_the_layers_that_gain_less(ctx, drift):
    # No schedule: each layer is the min_gain 0 re-plan's, or the current
    # layer where that re-plan lowers its largest load by less than
    # min_gain of it; the default is the same as asking for 0.02.
    shape = SHAPES[0]
    P, G, N, M = shape[2:]
    w0, w1 = loads(shape, 70, drift)
    cur = ctx.rebalance(w0, P, G, N, M).phy2log.copy()
    full = ctx.rebalance(w1, P, G, N, M, current=cur, min_gain=0).phy2log
    dflt = ctx.rebalance(w1, P, G, N, M, current=cur).phy2log
    asked = ctx.rebalance(w1, P, G, N, M, current=cur,
                          min_gain=eplb_cl.MIN_GAIN_DEFAULT).phy2log
    np.testing.assert_array_equal(dflt, asked)
    before = gpu_loads(w1, cur, M).max(axis=1)
    after = gpu_loads(w1, full, M).max(axis=1)
    keep = before - after < eplb_cl.MIN_GAIN_DEFAULT * before
    np.testing.assert_array_equal(dflt[keep], cur[keep])
    np.testing.assert_array_equal(dflt[~keep], full[~keep])


def test_a_dead_gpu(ctx):
    shape = SHAPES[2]
    L, E, P, G, N, M = shape
    w0, w1 = loads(shape, 50, 0.1)
    cur = ctx.rebalance(w0, P, G, N, M).phy2log.copy()
    mask = np.ones(M, bool)
    mask[1] = False
    plan, sched = ctx.rebalance(w1, P, G, N, M, current=cur, mask=mask,
                                stage_copies_per_gpu=4, schedule=True)
    assert sched.num_stages >= 1
    check_plan(w1, *plan, P, M, mask=mask)
    check_schedule(shape, w1, cur, plan, sched, 4, mask=mask)
    # a budget too small for the dead GPU's experts: the library's refusal,
    # the caller's arrays untouched
    out = eplb_cl.Plan(*(np.full_like(a, 77) for a in plan))
    with pytest.raises(eplb_cl.EplbError) as info:
        ctx.rebalance(w1, P, G, N, M, current=cur, mask=mask,
                      max_copies_per_gpu=0, out=out)
    assert info.value.name == "EPLB_ERR_BAD_OPTION"
    assert "dead GPUs" in info.value.detail
    for a in out:
        assert (a == 77).all()


def test_schedule_into_out(ctx):
    shape = SHAPES[1]
    L, E, P, G, N, M = shape
    w0, w1 = loads(shape, 60, 0.2)
    cur = ctx.rebalance(w0, P, G, N, M).phy2log.copy()
    out = ctx.scratch(L, E, P)
    plan, sched = ctx.rebalance(w1, P, G, N, M, current=cur, out=out,
                                stage_copies_per_gpu=2, schedule=True)
    assert plan.phy2log is out.phy2log
    # the schedule keeps its own copies of both plans
    kept = sched.phy2log.copy()
    ctx.rebalance(w0, P, G, N, M, out=out)
    np.testing.assert_array_equal(sched.phy2log, kept)
    assert not np.shares_memory(sched.current, cur)


# ---- refusals ----

@pytest.fixture
def case(ctx):
    shape = SHAPES[1]
    L, E, P, G, N, M = shape
    w0, w1 = loads(shape, 70, 0.2)
    cur = ctx.rebalance(w0, P, G, N, M).phy2log.copy()
    out = eplb_cl.Plan(np.full((L, P), 77, np.int32),
                       np.full((L, E, P - E + 1), 77, np.int32),
                       np.full((L, E), 77, np.int32))
    yield types.SimpleNamespace(ctx=ctx, w=w1, cur=cur, out=out,
                                sizes=(P, G, N, M))
    for a in out:
        assert (a == 77).all(), "an output array was written"


@pytest.mark.parametrize("argument,value,match", [
    ("max_copies_per_gpu", -2, "within -1..2147483647, not -2"),
    ("max_copies_per_gpu", 2 ** 40, "not 1099511627776"),
    ("max_copies_per_gpu", 2 ** 32 + 3, "not 4294967299"),  # not 3
    ("max_copies_per_gpu", True, "not a bool"),
    ("max_copies_per_gpu", np.bool_(False), "not a bool"),
    ("max_copies_per_gpu", 2.0, "not float"),
    ("max_copies_per_gpu", np.float32(1), "not float32"),
    ("max_copies_per_gpu", "3", "not str"),
    ("max_copies", -2, "within -1..9223372036854775807, not -2"),
    ("max_copies", 2 ** 63, "not 9223372036854775808"),
    ("max_copies", 1.5, "not float"),
    ("max_copies", False, "not a bool"),
    ("stage_copies_per_gpu", -1, "within 0..2147483647, not -1"),
    ("stage_copies_per_gpu", 2 ** 40, "not 1099511627776"),
    ("stage_copies_per_gpu", True, "not a bool"),
    ("stage_copies_per_gpu", "1", "not str"),
    ("min_gain", 1.5, "share in [0, 1)"),
    ("min_gain", 1, "share in [0, 1)"),
    ("min_gain", -0.01, "share in [0, 1)"),
    ("min_gain", float("nan"), "finite"),
    ("min_gain", float("inf"), "finite"),
    ("min_gain", 0.99999999, "is 1 as a C float"),
    ("min_gain", 1e-50, "0 as a C float"),
    ("min_gain", True, "not bool"),
    ("min_gain", "0.1", "not str"),
    ("schedule", 1, "True or False"),
    ("schedule", "yes", "True or False"),
])
def test_bad_migration_arguments(case, argument, value, match):
    with pytest.raises(eplb_cl.EplbInputError) as info:
        case.ctx.rebalance(case.w, *case.sizes, current=case.cur,
                           out=case.out, **{argument: value})
    err = info.value
    assert isinstance(err, ValueError)
    assert err.argument == argument
    assert argument in str(err) and match in str(err), str(err)


@pytest.mark.parametrize("kw", [dict(max_copies_per_gpu=2),
                                dict(max_copies=0),
                                dict(stage_copies_per_gpu=1),
                                dict(min_gain=0.05), dict(schedule=True)])
def test_a_migration_needs_the_plan_in_service(case, kw):
    with pytest.raises(eplb_cl.EplbInputError) as info:
        case.ctx.rebalance(case.w, *case.sizes, out=case.out, **kw)
    assert info.value.argument == "current"
    assert "pass current" in str(info.value)


def test_absent_migration_arguments_are_the_plain_call(ctx):
    # -1 budgets, one stage and min_gain at its default ask for nothing:
    # the plain re-plan, and with no current plan the fresh one.
    shape = SHAPES[1]
    P, G, N, M = shape[2:]
    w0, w1 = loads(shape, 80, 0.2)
    cur = ctx.rebalance(w0, P, G, N, M).phy2log.copy()
    none = dict(max_copies_per_gpu=-1, max_copies=np.int64(-1),
                stage_copies_per_gpu=0, min_gain=eplb_cl.MIN_GAIN_DEFAULT,
                schedule=False)
    np.testing.assert_array_equal(
        ctx.rebalance(w1, P, G, N, M, current=cur, **none).phy2log,
        ctx.rebalance(w1, P, G, N, M, current=cur).phy2log)
    np.testing.assert_array_equal(
        ctx.rebalance(w1, P, G, N, M, **none).phy2log,
        ctx.rebalance(w1, P, G, N, M).phy2log)


def test_phy2log_after_checks_the_stage(ctx):
    shape = SHAPES[1]
    P, G, N, M = shape[2:]
    w0, w1 = loads(shape, 90, 0.2)
    cur = ctx.rebalance(w0, P, G, N, M).phy2log.copy()
    _, sched = ctx.rebalance(w1, P, G, N, M, current=cur,
                             stage_copies_per_gpu=1, schedule=True)
    for bad in (-1, sched.num_stages + 1, 1.0, True):
        with pytest.raises(eplb_cl.EplbInputError) as info:
            sched.phy2log_after(bad)
        assert info.value.argument == "stage"


# ---- the vLLM adapter ----

@pytest.fixture
def vllm_deterministic():
    eplb_cl.configure(backend="reference", **DETERMINISTIC)
    saved = eplb_vllm.EplbClPolicy.min_gain
    # the layer order is recorded on request (it costs the schedule)
    eplb_vllm.EplbClPolicy.record_layer_order = True
    yield
    eplb_vllm.EplbClPolicy.record_layer_order = False
    eplb_vllm.EplbClPolicy.min_gain = saved
    eplb_cl.configure(backend=None, candidates=None, swap_rounds=None)


def test_vllm_min_gain_and_layer_order(vllm_deterministic):
    Policy = eplb_vllm.EplbClPolicy
    assert Policy.min_gain == eplb_cl.MIN_GAIN_DEFAULT
    L, E, P, G, N, M = SHAPES[1]
    w0, w1 = loads(SHAPES[1], 100, 0.3)
    with eplb_cl.Context(backend="reference", **DETERMINISTIC) as c:
        old = c.rebalance(w0, P, G, N, M).phy2log.astype(np.int64)
        _, sched = c.rebalance(w1, P, G, N, M, current=old, schedule=True)
    new = Policy.rebalance_experts(w1, P, G, N, M, old)
    assert new.dtype == np.int64 and new.shape == (L, P)
    order = Policy.last_layer_order()
    assert sorted(order.tolist()) == list(range(L))
    changes = (new != old).any(axis=1)
    # the layers that change first, in the library's order
    n = int(changes.sum())
    assert changes[order[:n]].all() and not changes[order[n:]].any()
    lib_order = [l for l in sched.layer_order.tolist() if changes[l]]
    assert order[:n].tolist() == lib_order
    # min_gain above every layer's share: the old map stays
    peak = gpu_loads(w1, old, M).max(axis=1)
    above = float((sched.layer_gain / peak).max()) + 0.001
    kept = Policy.rebalance_experts(w1, P, G, N, M, old, min_gain=above)
    np.testing.assert_array_equal(kept, old)
    assert not (Policy.last_layer_order() is None)
    Policy.min_gain = above  # the class's, for vLLM's own calls
    np.testing.assert_array_equal(
        Policy.rebalance_experts(w1, P, G, N, M, old), old)
    with pytest.raises(eplb_cl.EplbInputError) as info:
        Policy.rebalance_experts(w1, P, G, N, M, old, min_gain=1.5)
    assert info.value.argument == "min_gain"
    # a fresh plan (no old map) has no order
    Policy.rebalance_experts(w1, P, G, N, M)
    assert Policy.last_layer_order() is None


def test_vllm_min_gain_without_the_layer_order(vllm_deterministic):
    # Without record_layer_order no schedule is made: the policy's plan is
    # the library's re-plan with the policy's min_gain.
    Policy = eplb_vllm.EplbClPolicy
    Policy.record_layer_order = False
    L, E, P, G, N, M = SHAPES[0]
    w0, w1 = loads(SHAPES[0], 101, 0.05)
    with eplb_cl.Context(backend="reference", **DETERMINISTIC) as c:
        old = c.rebalance(w0, P, G, N, M).phy2log.astype(np.int64)
        for gain in (None, 0.0, 0.04):
            want = c.rebalance(w1, P, G, N, M, current=old,
                               min_gain=gain).phy2log
            got = Policy.rebalance_experts(w1, P, G, N, M, old,
                                           min_gain=gain)
            np.testing.assert_array_equal(got, want)
    assert Policy.last_layer_order() is None


def test_vllm_min_gain_from_the_environment(vllm_deterministic,
                                            monkeypatch):
    policy_mod = types.ModuleType("vllm.distributed.eplb.policy")
    policy_mod.EPLB_POLICIES = {}
    names = ["vllm", "vllm.distributed", "vllm.distributed.eplb"]
    for n in names:
        monkeypatch.setitem(sys.modules, n, types.ModuleType(n))
    monkeypatch.setitem(sys.modules, "vllm.distributed.eplb.policy",
                        policy_mod)
    sys.modules["vllm.distributed.eplb"].policy = policy_mod
    monkeypatch.delenv("EPLB_CL_VLLM_DEFAULT", raising=False)
    monkeypatch.setenv("EPLB_CL_MIN_GAIN", "0.02")
    eplb_vllm.register()
    assert eplb_vllm.EplbClPolicy.min_gain == pytest.approx(0.02)
    for bad in ("abc", "1.5", "nan"):
        monkeypatch.setenv("EPLB_CL_MIN_GAIN", bad)
        with pytest.raises(eplb_cl.EplbInputError) as info:
            eplb_vllm.register()
        assert info.value.argument == "EPLB_CL_MIN_GAIN"


def test_vllm_scale_up_layers_fill_every_slot(vllm_deterministic):
    # Old maps with empty slots (new GPUs): those layers are re-planned in
    # full and come first in the order.
    w = seeded_loads(60, 4, 16)
    old = np.full((4, 24), -1, np.int64)
    old[:, :16] = np.arange(16)
    old[3, 16:] = [12, 13, 14, 15] * 2  # one layer on all 6 GPUs
    new = eplb_vllm.EplbClPolicy.rebalance_experts(w, 24, 4, 2, 6, old)
    assert ((new >= 0) & (new < 16)).all()
    order = eplb_vllm.EplbClPolicy.last_layer_order()
    assert order[:3].tolist() == [0, 1, 2] and order[3] == 3
