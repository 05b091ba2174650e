"""Arguments that used to wrap, truncate or read past a buffer silently:
each is refused before anything reaches the library, with an
EplbInputError (a ValueError) that names the argument, and the caller's
output arrays are left as they were."""

import numpy as np
import pytest

import eplb_cl
from conftest import DETERMINISTIC, GOLDEN_WEIGHT

G = (16, 4, 2, 8)  # P, G, N, M for the golden case's 12 experts


@pytest.fixture
def ctx():
    with eplb_cl.Context(backend="reference") as c:
        yield c


@pytest.fixture
def out(ctx):
    """A caller's output arrays, filled with a value no plan writes."""
    plan = eplb_cl.Plan(np.full((2, 16), 77, np.int32),
                        np.full((2, 12, 5), 77, np.int32),
                        np.full((2, 12), 77, np.int32))
    yield plan
    for a in plan:
        assert (a == 77).all(), "an output array was written"


def refused(argument, fn, *args, match=None, **kw):
    with pytest.raises(eplb_cl.EplbInputError) as info:
        fn(*args, **kw)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.argument == argument
    assert argument in str(err)
    if match:
        assert match in str(err), str(err)
    return err


# ---- masks ----

@pytest.mark.parametrize("mask,match", [
    (np.array(["1"] * 8), "boolean or integer"),        # strings
    (["yes"] * 8, "boolean or integer"),
    (np.ones(8), "boolean or integer"),                   # floats
    (np.array([1, 1, 2, 1, 1, 1, 1, 1]), "mask[2] = 2"),  # not 0/1
    (np.array([1, -1, 1, 1, 1, 1, 1, 1]), "mask[1] = -1"),
    (np.zeros(8, np.int64), "no usable GPU"),
    (np.zeros(8, bool), "no usable GPU"),
    (np.ones((2, 4), bool), "shape (8,)"),
    (np.ones(64, bool), "shape (8,)"),
])
def test_bad_masks(ctx, out, mask, match):
    refused("mask", ctx.rebalance, GOLDEN_WEIGHT, *G, mask=mask, out=out)


def test_good_masks(ctx):
    live = np.array([1, 1, 1, 1, 1, 1, 1, 0])
    a = ctx.rebalance(GOLDEN_WEIGHT, *G, mask=live).phy2log
    b = ctx.rebalance(GOLDEN_WEIGHT, *G, mask=live.astype(bool)).phy2log
    c = ctx.rebalance(GOLDEN_WEIGHT, *G, mask=live.astype(np.uint8)).phy2log
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert (a[:, 14:] == -1).all()


# ---- current plans ----

@pytest.mark.parametrize("value,match", [
    (2 ** 32 + 14, "current[0][3] = 4294967310"),  # not read as 14
    (-2, "current[0][3] = -2"),
    (12, "current[0][3] = 12: expert ids are 0..11"),
])
def test_current_ids_out_of_range(ctx, out, value, match):
    current = np.tile(np.arange(16) % 12, (2, 1)).astype(np.int64)
    current[0, 3] = value
    refused("current", ctx.rebalance, GOLDEN_WEIGHT, *G, current=current,
            out=out, match=match)


@pytest.mark.parametrize("current", [
    np.zeros((2, 16), bool), np.zeros((2, 16), np.float32),
    np.array([["0"] * 16] * 2)])
def test_current_of_another_dtype(ctx, out, current):
    refused("current", ctx.rebalance, GOLDEN_WEIGHT, *G, current=current,
            out=out, match="integer expert ids")


def test_current_empty_slots_are_accepted(ctx):
    # A plan on 8 GPUs, now 12: the 4 new GPUs' slots are empty.
    plan = ctx.rebalance(GOLDEN_WEIGHT, 16, 1, 1, 8).phy2log
    current = np.full((2, 24), -1, np.int64)
    current[:, :16] = plan
    new = ctx.rebalance(GOLDEN_WEIGHT, 24, 1, 1, 12, current=current)
    assert ((new.phy2log >= 0) & (new.phy2log < 12)).all()


# ---- sizes ----

@pytest.mark.parametrize("index,name", [(0, "num_replicas"),
                                        (1, "num_groups"), (2, "num_nodes"),
                                        (3, "num_gpus")])
@pytest.mark.parametrize("value", [2 ** 32 + 24, 2 ** 40, 2 ** 31, -1])
def test_sizes_beyond_a_c_int(ctx, out, index, name, value):
    args = list(G)
    args[index] = value
    refused(name, ctx.rebalance, GOLDEN_WEIGHT, *args, out=out,
            match=str(value))


@pytest.mark.parametrize("value", [16.0, "16", True, None, 16.5])
def test_sizes_that_are_not_integers(ctx, out, value):
    refused("num_replicas", ctx.rebalance, GOLDEN_WEIGHT, value, 4, 2, 8,
            out=out, match="integer")


def test_integer_like_sizes(ctx):
    torch = pytest.importorskip("torch")
    a = ctx.rebalance(GOLDEN_WEIGHT, np.int64(16), np.int32(4), 2,
                      torch.tensor(8)).phy2log
    np.testing.assert_array_equal(a, ctx.rebalance(GOLDEN_WEIGHT, *G)
                                  .phy2log)


def test_sizes_through_the_drop_ins():
    torch = pytest.importorskip("torch")
    from eplb_cl.vllm import EplbClPolicy
    from eplb_cl.sglang import rebalance_experts as sglang
    refused("num_replicas", eplb_cl.rebalance_experts, GOLDEN_WEIGHT,
            2 ** 32 + 24, 4, 2, 8)
    refused("num_replicas", EplbClPolicy.rebalance_experts,
            torch.tensor(GOLDEN_WEIGHT), 2 ** 32 + 24, 4, 2, 8)
    refused("num_ranks", EplbClPolicy.rebalance_experts,
            torch.tensor(GOLDEN_WEIGHT), 16, 4, 2, 2 ** 32 + 8)
    refused("num_physical_experts", sglang, torch.tensor([GOLDEN_WEIGHT]),
            2 ** 40, 2, 4, 2, "deepseek")


# ---- options ----

@pytest.mark.parametrize("option,value,match", [
    ("candidates", 2 ** 32 + 4, "4294967300"),   # not 4
    ("candidates", 2 ** 40, "1099511627776"),
    ("swap_rounds", -2 ** 31 - 1, "-2147483649"),
    ("seed", 2 ** 64, "18446744073709551616"),   # not 0
    ("seed", -1, "-1"),
    ("seed", 1.5, "integer"),
    ("noise", 1e39, "1e+39"),
    ("tolerance", float("nan"), "nan"),
    ("tolerance", "0.1", "number"),
    ("device", "gpu\0cpu", "NUL"),
    ("platform", b"pocl", "string"),
    ("backend", "cuda", "reference"),
    ("policy", 1, "hierarchical"),
])
def test_options_out_of_their_c_types(option, value, match):
    refused(option, eplb_cl.Context, **{option: value}, match=match)


def test_options_at_the_edges_of_their_c_types():
    with eplb_cl.Context(backend="reference", seed=2 ** 64 - 1,
                         **DETERMINISTIC) as c:
        c.rebalance(GOLDEN_WEIGHT, *G)


def test_configured_options_are_checked_at_first_use():
    eplb_cl.configure(seed=2 ** 64)
    try:
        refused("seed", eplb_cl.rebalance_experts, GOLDEN_WEIGHT, *G)
    finally:
        eplb_cl.configure(seed=None)


# ---- loads ----

def test_float64_loads_beyond_float32(ctx, out):
    w = np.array(GOLDEN_WEIGHT, np.float64)
    w[1, 4] = 1e39
    err = refused("weight", ctx.rebalance, w, *G, out=out,
                  match="weight[1][4] = 1e+39")
    assert "float32" in str(err)


def test_float64_loads_that_underflow_to_zero(ctx, out):
    w = np.array(GOLDEN_WEIGHT, np.float64)
    w[0, 2] = 1e-50
    refused("weight", ctx.rebalance, w, *G, out=out,
            match="weight[0][2] = 1e-50")


def test_small_float64_loads_that_float32_keeps(ctx):
    # 1e-40 is a float32 subnormal: kept, not refused.
    w = np.array(GOLDEN_WEIGHT, np.float64)
    w[0, 2] = 1e-40
    ctx.rebalance(w, *G)
    w[0, 2] = 3.4e38  # below float32's largest
    ctx.rebalance(w, *G)


@pytest.mark.parametrize("weight", [
    np.array([["1"] * 12] * 2),
    np.array(GOLDEN_WEIGHT, dtype=object),
    np.array(GOLDEN_WEIGHT, dtype=np.complex64),
    [[1.0, 2.0], [3.0]],  # ragged
])
def test_loads_that_are_not_numbers(ctx, out, weight):
    refused("weight", ctx.rebalance, weight, *G, out=out)


def test_loads_of_the_wrong_rank(ctx, out):
    refused("weight", ctx.rebalance, [1.0, 2.0], *G, out=out,
            match="2 dimensions")


# ---- the library's refusals leave outputs alone too ----

def test_library_errors_leave_outputs(ctx, out):
    with pytest.raises(eplb_cl.EplbError, match="GROUPS_DONT_DIVIDE"):
        ctx.rebalance(GOLDEN_WEIGHT, 16, 5, 1, 8, out=out)
    w = np.array(GOLDEN_WEIGHT, np.float32)
    w[0, 0] = np.nan
    with pytest.raises(eplb_cl.EplbError, match="LOAD_NAN"):
        ctx.rebalance(w, *G, out=out)
    with pytest.raises(eplb_cl.EplbError, match="BAD_PLAN"):
        ctx.rebalance(GOLDEN_WEIGHT, *G, current=np.zeros((2, 16), int),
                      out=out)


def test_bad_out_arrays(ctx):
    good = ctx.scratch(2, 12, 16)
    bad = eplb_cl.Plan(good.phy2log.astype(np.int64), good.log2phy,
                       good.logcnt)
    refused("out", ctx.rebalance, GOLDEN_WEIGHT, *G, out=bad)
    refused("out", ctx.rebalance, GOLDEN_WEIGHT, *G, out=(good.phy2log,))


# ---- quality and copies ----

def test_quality_and_copies_check_their_plans():
    plan = eplb_cl.Context(backend="reference").rebalance(GOLDEN_WEIGHT, *G)
    p2l = plan.phy2log.astype(np.int64)
    p2l[0, 0] = 2 ** 32  # not read as expert 0
    refused("phy2log", eplb_cl.quality, GOLDEN_WEIGHT, p2l, plan.logcnt,
            4, 2, 8)
    cnt = plan.logcnt.astype(np.int64)
    cnt[0, 0] = 2 ** 32 + 1
    refused("logcnt", eplb_cl.quality, GOLDEN_WEIGHT, plan.phy2log, cnt,
            4, 2, 8)
    refused("next", eplb_cl.copies, plan.phy2log, p2l, 12, 8)
    refused("num_gpus", eplb_cl.copies, plan.phy2log, plan.phy2log, 12,
            2 ** 32 + 8)
