"""Every status the library can return from Python's calls surfaces as
EplbError with its name and the library's detail."""

import os
import re

import numpy as np
import pytest

import eplb_cl
from eplb_cl._lib import Shape, lib
from eplb_cl._errors import check
from conftest import GOLDEN_WEIGHT

G = (16, 4, 2, 8)  # P, G, N, M for the golden case's 12 experts


def header_statuses():
    root = os.environ.get("EPLB_TEST_SRCDIR",
                          os.path.join(os.path.dirname(__file__), "..", ".."))
    with open(os.path.join(root, "include", "eplb_cl.h")) as f:
        text = f.read()
    return {int(v): n for n, v in re.findall(r"X\((EPLB_\w+), (-?\d+),",
                                             text)}


def raises(name, fn, *args, **kw):
    with pytest.raises(eplb_cl.EplbError) as info:
        fn(*args, **kw)
    err = info.value
    assert err.name == name, err
    assert err.detail, "%s came without the library's detail" % name
    assert err.detail in str(err) and err.message in str(err)
    assert err.status == {v: k for k, v in eplb_cl.STATUS_NAMES.items()}[
        name]
    return err


def test_status_names_match_the_header():
    assert eplb_cl.STATUS_NAMES == header_statuses()


@pytest.fixture
def ctx():
    with eplb_cl.Context(backend="reference") as c:
        yield c


@pytest.mark.parametrize("name,shape", [
    ("EPLB_ERR_ZERO_SIZE", (16, 4, 2, 0)),
    ("EPLB_ERR_GROUPS_DONT_DIVIDE", (16, 5, 1, 8)),
    ("EPLB_ERR_TOO_FEW_REPLICAS", (8, 4, 2, 8)),
    ("EPLB_ERR_GPUS_DONT_DIVIDE", (18, 4, 2, 8)),
    ("EPLB_ERR_NODES_DONT_DIVIDE", (16, 4, 3, 8)),
])
def test_shape_errors(ctx, name, shape):
    raises(name, ctx.rebalance, GOLDEN_WEIGHT, *shape)


def test_size_overflow(ctx):
    # log2phy would hold 2^16 x (2^30 - 2^16 + 1) int32s: no memory has that.
    w = np.ones((1, 1 << 16), np.float32)
    raises("EPLB_ERR_SIZE_OVERFLOW", ctx.rebalance, w, 1 << 30, 1, 1, 1)


@pytest.mark.parametrize("name,value", [
    ("EPLB_ERR_LOAD_NAN", np.nan), ("EPLB_ERR_LOAD_INFINITE", np.inf),
    ("EPLB_ERR_LOAD_NEGATIVE", -1.0)])
def test_bad_loads(ctx, name, value):
    w = np.array(GOLDEN_WEIGHT, np.float32)
    w[1, 5] = value
    err = raises(name, ctx.rebalance, w, *G)
    assert "5" in err.detail  # the detail names where


def test_bad_loads_through_the_drop_ins():
    w = np.array(GOLDEN_WEIGHT, np.float64)
    w[0, 0] = np.nan
    raises("EPLB_ERR_LOAD_NAN", eplb_cl.rebalance_experts, w, *G)


def test_bad_option():
    raises("EPLB_ERR_BAD_OPTION", eplb_cl.Context, backend="reference",
           candidates=0)


def test_policy_mismatch():
    with eplb_cl.Context(backend="reference", policy="hierarchical") as c:
        raises("EPLB_ERR_POLICY_MISMATCH", c.rebalance, [[1.0] * 12], 24, 4,
               3, 6)


def test_no_device():
    raises("EPLB_ERR_NO_DEVICE", eplb_cl.Context, backend="opencl",
           device="no device is called this", enforce_device=True)


def test_kernel_build(tmp_path, monkeypatch):
    # The kernel sources of the tree these tests belong to, wherever
    # pytest starts.
    root = os.environ.get("EPLB_TEST_SRCDIR",
                          os.path.join(os.path.dirname(__file__), "..", ".."))
    src = os.path.join(root, "cl")
    for name in os.listdir(src):
        text = open(os.path.join(src, name)).read()
        (tmp_path / name).write_text(text + "\nthis is not OpenCL C;\n")
    monkeypatch.setenv("EPLB_CL_KERNEL_DIR", str(tmp_path))
    monkeypatch.setenv("EPLB_CL_CACHE_DIR", "off")

    def build():
        with eplb_cl.Context(backend="opencl") as c:
            c.rebalance(GOLDEN_WEIGHT, *G)
    raises("EPLB_ERR_KERNEL_BUILD", build)


def test_bad_plan(ctx):
    # Ids in range (Python checks those), but experts 1..11 in no slot.
    current = np.zeros((2, 16), np.int32)
    raises("EPLB_ERR_BAD_PLAN", ctx.rebalance, GOLDEN_WEIGHT, *G,
           current=current)


def test_bad_mask(ctx):
    # One usable GPU of 8 has 2 slots for 12 experts.
    raises("EPLB_ERR_BAD_MASK", ctx.rebalance, GOLDEN_WEIGHT, *G,
           mask=np.array([1, 0, 0, 0, 0, 0, 0, 0], np.int32))


def test_null_argument():
    # Python never passes NULL; the raw call shows check() reports it.
    shape = Shape(2, 12, 16, 4, 2, 8)
    raises("EPLB_ERR_NULL_ARGUMENT", lambda: check(
        lib().eplb_rebalance(None, shape, None, None, None, None)))


def test_python_side_shape_errors(ctx):
    with pytest.raises(ValueError, match="2 dimensions"):
        ctx.rebalance([1.0, 2.0], 2, 1, 1, 1)
    with pytest.raises(ValueError, match="current must have shape"):
        ctx.rebalance(GOLDEN_WEIGHT, *G, current=np.zeros((2, 8), int))
    with pytest.raises(ValueError, match="mask must have shape"):
        ctx.rebalance(GOLDEN_WEIGHT, *G, mask=[1, 1])
    with pytest.raises(ValueError, match="backend must be one of"):
        eplb_cl.Context(backend="cuda")
