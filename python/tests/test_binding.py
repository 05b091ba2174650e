"""The ctypes mirror of the C API, and how the library is found."""

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import eplb_cl
from eplb_cl import _lib

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.dirname(HERE)


def test_options_mirror_the_c_struct():
    opts = _lib.Options()
    _lib.lib().eplb_options_default(ctypes.byref(opts))
    assert opts.struct_size == ctypes.sizeof(_lib.Options)
    # Fields after the 64-bit seed and the pointers read back their
    # documented defaults only if every offset matches.
    assert (opts.backend, opts.policy, opts.candidates,
            opts.swap_rounds, opts.seed) == (0, 0, 64, 20, 0)
    assert abs(opts.noise - 0.2) < 1e-7
    assert opts.platform is None and opts.device_type is None
    assert (opts.enforce_device, opts.use_clblast, opts.tolerance,
            opts.distinct_per_gpu) == (0, 0, 0.0, 0)


def test_quality_mirrors_the_c_struct():
    # The library takes a struct_size up to its own sizeof(eplb_quality)
    # and refuses one byte more: equal sizes. A one-layer plan whose
    # figures are known checks the offsets.
    shape = _lib.Shape(1, 4, 4, 1, 1, 2)
    w = (ctypes.c_float * 4)(1, 1, 1, 3)
    p2l = (ctypes.c_int32 * 4)(0, 1, 2, 3)
    cnt = (ctypes.c_int32 * 4)(1, 1, 1, 1)
    lib = _lib.lib()

    def quality(q):
        return lib.eplb_plan_quality(ctypes.byref(shape), 2,
                                     ctypes.addressof(w), ctypes.addressof(p2l),
                                     ctypes.addressof(cnt), ctypes.byref(q))

    q = _lib.Quality.new()
    assert quality(q) == 0
    assert q.struct_size == ctypes.sizeof(_lib.Quality)
    # GPU loads 2 and 4: balancedness 3/4 in the one layer.
    assert (q.balancedness_mean, q.balancedness_worst, q.worst_layer) == (
        0.75, 0.75, 0)
    for bad in (0, ctypes.sizeof(_lib.Quality) + 1):
        q = _lib.Quality(struct_size=bad, balancedness_mean=-1.0)
        assert quality(q) == -11  # EPLB_ERR_BAD_OPTION
        assert b"struct_size" in lib.eplb_last_error()
        assert q.balancedness_mean == -1.0


def test_calls_release_the_gil():
    # ctypes.CDLL drops the GIL around each call; PyDLL would keep it.
    lib = _lib.lib()
    assert type(lib) is ctypes.CDLL
    assert not isinstance(lib, ctypes.PyDLL)


def test_library_version():
    assert eplb_cl.library_version() == eplb_cl.__version__


def load_in_child(env):
    """Imports eplb_cl in a fresh interpreter with env; (ok, output)."""
    code = ("import eplb_cl; print(eplb_cl.library_version())")
    full = {k: v for k, v in os.environ.items()
            if k not in ("EPLB_CL_LIBRARY", "LD_LIBRARY_PATH",
                         "PKG_CONFIG_PATH")}
    # The loader may keep its other folders (where the library's own
    # dependencies may live), never the one that holds the built library.
    built = os.environ.get("EPLB_CL_LIBRARY")
    built = os.path.dirname(os.path.abspath(built)) if built else None
    keep = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":")
            if d and (built is None or
                      os.path.abspath(d) != built)]
    full.update(env)
    if keep:
        full["LD_LIBRARY_PATH"] = ":".join(
            ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else [])
            + keep)
    full["PYTHONPATH"] = PACKAGE_DIR
    r = subprocess.run([sys.executable, "-c", code], env=full,
                       capture_output=True, text=True)
    return r.returncode == 0, r.stdout + r.stderr


def built_libdir():
    path = os.environ.get("EPLB_CL_LIBRARY")
    if not path or not os.path.exists(path):
        pytest.skip("EPLB_CL_LIBRARY does not name the built library")
    return os.path.dirname(os.path.abspath(path))


def test_found_through_each_of_the_three_ways(tmp_path):
    libdir = built_libdir()
    installed, _ = load_in_child({"PKG_CONFIG_PATH": str(tmp_path)})
    ok, out = load_in_child({"EPLB_CL_LIBRARY": os.path.join(
        libdir, _lib._SONAME)})
    assert ok, out
    ok, out = load_in_child({"LD_LIBRARY_PATH": libdir})
    assert ok, out
    (tmp_path / "eplb-cl.pc").write_text(
        "libdir=%s\nName: eplb-cl\nDescription: test\nVersion: 0.1.0\n"
        "Libs: -L${libdir} -leplb-cl\n" % libdir)
    ok, out = load_in_child({"PKG_CONFIG_PATH": str(tmp_path)})
    assert ok, out
    if installed:
        pytest.skip("a libeplb-cl is installed system-wide: the error for "
                    "no library at all cannot be shown here")


def test_the_error_names_all_three_ways(tmp_path):
    ok, out = load_in_child({"EPLB_CL_LIBRARY": str(tmp_path / "nope.so"),
                             "PKG_CONFIG_PATH": str(tmp_path)})
    if ok:
        pytest.skip("a libeplb-cl is installed system-wide")
    assert "EPLB_CL_LIBRARY=" in out and "nope.so" in out
    assert "the loader" in out
    assert "pkg-config" in out


def test_one_context_per_thread_across_options():
    # The convenience functions keep one context per thread and device
    # choice: other options change on it (eplb_context_set_options), and
    # the plans are those of a new context with those options.
    from eplb_cl import _threads
    from eplb_cl.context import Context
    w = np.arange(1, 2 * 16 + 1, dtype=np.float32).reshape(2, 16)[:, ::-1]
    a = _threads.context(backend="reference", candidates=1, swap_rounds=0)
    pa = _threads.plan(w, 24, 4, 2, 8, backend="reference", candidates=1,
                       swap_rounds=0).phy2log.copy()
    b = _threads.context(backend="reference", candidates=7, seed=3)
    assert a is b
    pb = _threads.plan(w, 24, 4, 2, 8, backend="reference", candidates=7,
                       seed=3).phy2log.copy()
    with Context(backend="reference", candidates=1, swap_rounds=0) as c:
        assert (c.rebalance(w, 24, 4, 2, 8).phy2log == pa).all()
    with Context(backend="reference", candidates=7, seed=3) as c:
        assert (c.rebalance(w, 24, 4, 2, 8).phy2log == pb).all()
    # a live context refuses another backend
    with pytest.raises(Exception):
        a.set_options(backend="opencl")


def test_host_threads_change_nothing_in_the_plan():
    # host_threads spreads the host's layers over threads: the re-plan
    # from a current plan is the one thread's, bit for bit; out-of-range
    # values are refused with the option's name.
    from eplb_cl.context import Context
    from eplb_cl import EplbError
    rng = np.random.default_rng(5)
    w0 = rng.gamma(0.6, 100.0, size=(12, 64)).astype(np.float32)
    w1 = (w0 * rng.uniform(0.5, 1.5, size=w0.shape)).astype(np.float32)
    plans = []
    for threads in (1, 3, 0):
        with Context(backend="reference", candidates=4,
                     host_threads=threads) as c:
            cur = c.rebalance(w0, 80, 8, 2, 8)
            plans.append(c.rebalance(w1, 80, 8, 2, 8,
                                     current=cur.phy2log).phy2log.copy())
    assert (plans[0] == plans[1]).all() and (plans[0] == plans[2]).all()
    with pytest.raises((EplbError, ValueError), match="host_threads"):
        Context(backend="reference", host_threads=-1)
    with pytest.raises((EplbError, ValueError), match="host_threads"):
        Context(backend="reference", host_threads=1000)
