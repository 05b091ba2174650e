"""The forecast of the next window from Python: Context.rebalance with a
[samples, layers, experts] window, its checks, and the SGLang and vLLM
adapters passing their window axis once eplb_cl.configure(forecast=...)
asks for it."""

import numpy as np
import pytest

import eplb_cl
from eplb_cl import sglang, vllm
from eplb_cl._errors import EplbError, EplbInputError

SHAPE = dict(num_replicas=40, num_groups=4, num_nodes=2, num_gpus=8)


def loads(seed, layers=6, experts=32):
    rng = np.random.default_rng(seed)
    return rng.integers(1, 500, size=(layers, experts)).astype(np.float32)


@pytest.fixture
def ctx():
    with eplb_cl.Context(backend="reference", candidates=8,
                         swap_rounds=4) as c:
        yield c


@pytest.mark.parametrize("forecast", ["auto", "last", "mean", "ewma",
                                      "trend", "adaptive", "robust"])
def test_equal_samples_plan_as_one_window(ctx, forecast):
    w = loads(1)
    one = ctx.rebalance(w, **SHAPE)
    many = ctx.rebalance(np.stack([w, w, w]), **SHAPE, forecast=forecast)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)
    assert len(ctx.last_forecast) == w.shape[0]
    assert set(ctx.last_forecast) <= {"last", "mean", "ewma", "trend"}


def test_estimator_named_per_layer(ctx):
    win = np.stack([loads(s) for s in range(4)])
    ctx.rebalance(win, **SHAPE, forecast="trend", forecast_k=3)
    assert ctx.last_forecast == ["trend"] * 6


@pytest.mark.parametrize("value,name", [(np.nan, "EPLB_ERR_LOAD_NAN"),
                                        (np.inf, "EPLB_ERR_LOAD_INFINITE"),
                                        (-1.0, "EPLB_ERR_LOAD_NEGATIVE")])
def test_bad_sample_named(ctx, value, name):
    win = np.stack([loads(1), loads(2), loads(3)])
    win[2, 4, 17] = value
    out = eplb_cl.Plan(np.full((6, 40), 7, np.int32),
                       np.full((6, 32, 9), 7, np.int32),
                       np.full((6, 32), 7, np.int32))
    with pytest.raises(EplbError) as e:
        ctx.rebalance(win, **SHAPE, out=out, forecast="mean")
    assert e.value.name == name
    assert "sample 2, layer 4, expert 17" in e.value.detail
    assert all((a == 7).all() for a in out)


def test_all_zero_sample_refused(ctx):
    win = np.stack([loads(1), np.zeros((6, 32), np.float32)])
    with pytest.raises(EplbError) as e:
        ctx.rebalance(win, **SHAPE)
    assert e.value.name == "EPLB_ERR_BAD_OPTION"
    assert "sample 1 of 2" in e.value.detail


@pytest.mark.parametrize("kw", [dict(forecast="median"),
                                dict(forecast_k=0),
                                dict(forecast_alpha=0.0),
                                dict(forecast_alpha=1.5),
                                dict(forecast_lookback=17)])
def test_bad_forecast_arguments(ctx, kw):
    win = np.stack([loads(1), loads(2)])
    with pytest.raises(EplbInputError):
        ctx.rebalance(win, **SHAPE, **kw)


def test_forecast_needs_a_window(ctx):
    with pytest.raises(EplbInputError, match="samples"):
        ctx.rebalance(loads(1), **SHAPE, forecast="mean")


def test_robust_may_keep_current(ctx):
    rng = np.random.default_rng(5)
    base = loads(9)
    win = np.stack([base * rng.uniform(0.98, 1.02, base.shape)
                    for _ in range(4)]).astype(np.float32)
    cur = ctx.rebalance(win[:3], **SHAPE, forecast="mean").phy2log.copy()
    plan = ctx.rebalance(win, **SHAPE, current=cur, forecast="robust",
                         forecast_lookback=3)
    kept = [i for i, f in enumerate(ctx.last_forecast) if f == "kept"]
    for i in kept:
        np.testing.assert_array_equal(plan.phy2log[i], cur[i])


@pytest.fixture
def forecasting():
    eplb_cl.configure(backend="reference", forecast="mean", forecast_k=8)
    yield
    eplb_cl.configure(backend=None, forecast=None, forecast_k=None)


def test_sglang_passes_the_window(forecasting):
    w = loads(4).astype(np.int32)
    zero = np.zeros_like(w)
    # the engine's window before its first steps holds zeros: left out
    win = np.stack([zero, w, w, w])
    got = sglang.rebalance_experts(win, 40, 5, 4, 2,
                                   "deepseek_hierarchical")
    want = sglang.rebalance_experts(w, 40, 5, 4, 2, "deepseek_hierarchical")
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_vllm_passes_the_window(forecasting):
    w = loads(6).astype(np.int32)
    win = np.stack([w, w])
    got = vllm.EplbClPolicy.rebalance_experts(win, 40, 4, 2, 8)
    want = vllm.EplbClPolicy.rebalance_experts(w, 40, 4, 2, 8)
    np.testing.assert_array_equal(got, want)
    # and from an old map
    got = vllm.EplbClPolicy.rebalance_experts(win, 40, 4, 2, 8, want)
    np.testing.assert_array_equal(got, want)
