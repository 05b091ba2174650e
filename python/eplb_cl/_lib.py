"""Finding libeplb-cl and declaring its C API for ctypes.

The structures mirror include/eplb_cl.h field for field; tests compare
ctypes.sizeof(Options) and ctypes.sizeof(Request) with the struct_size
that eplb_options_default() and eplb_request_default() write, and check
that the library takes ctypes.sizeof(Quality) and ctypes.sizeof(CSchedule)
as a struct_size and refuses one byte more, so a header change that is not
mirrored here fails loudly.
"""

import ctypes
import ctypes.util
import os
import subprocess
import sys
from typing import Optional, Tuple

# The shared object's soname: the ABI this package was written against.
if sys.platform == "darwin":
    _SONAME = "libeplb-cl.1.dylib"
else:
    _SONAME = "libeplb-cl.so.1"


class Shape(ctypes.Structure):
    _fields_ = [
        ("layers", ctypes.c_int),
        ("experts", ctypes.c_int),
        ("num_replicas", ctypes.c_int),
        ("num_groups", ctypes.c_int),
        ("num_nodes", ctypes.c_int),
        ("num_gpus", ctypes.c_int),
    ]


class Options(ctypes.Structure):
    # Enums are C ints on every ABI the library builds for.
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("backend", ctypes.c_int),
        ("policy", ctypes.c_int),
        ("candidates", ctypes.c_int),
        ("noise", ctypes.c_float),
        ("swap_rounds", ctypes.c_int),
        ("seed", ctypes.c_uint64),
        ("platform", ctypes.c_char_p),
        ("device", ctypes.c_char_p),
        ("device_type", ctypes.c_char_p),
        ("enforce_device", ctypes.c_int),
        ("use_clblast", ctypes.c_int),
        ("tolerance", ctypes.c_float),
        ("distinct_per_gpu", ctypes.c_int),
        ("profile", ctypes.c_int),
        ("host_threads", ctypes.c_int),
    ]


class Quality(ctypes.Structure):
    # An output struct: struct_size is the caller's to set (Quality.new()),
    # and the library writes no byte past it.
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("balancedness_mean", ctypes.c_double),
        ("balancedness_worst", ctypes.c_double),
        ("worst_layer", ctypes.c_int),
        ("bound_mean", ctypes.c_double),
        ("share_of_bound", ctypes.c_double),
        ("bound_is_weak", ctypes.c_int),
    ]

    @classmethod
    def new(cls) -> "Quality":
        """A Quality whose struct_size is set, ready for the library."""
        return cls(struct_size=ctypes.sizeof(cls))


# EPLB_MIN_GAIN_DEFAULT of include/eplb_cl.h (a test keeps them equal).
MIN_GAIN_DEFAULT = ctypes.c_float(0.02).value  # as the C float holds it

# eplb_forecast of include/eplb_cl.h, and the forecast's defaults (a test
# keeps them equal to eplb_request_default's).
FORECASTS = {"auto": 0, "last": 1, "mean": 2, "ewma": 3, "trend": 4,
             "adaptive": 5, "robust": 6}
FORECAST_KEPT = 7
FORECAST_K_DEFAULT = 4
FORECAST_ALPHA_DEFAULT = 0.5
FORECAST_LOOKBACK_DEFAULT = 0  # each estimator's own: adaptive 1, robust 2
MAX_WINDOWS = 65536
MAX_LOOKBACK = 16


class Request(ctypes.Structure):
    """eplb_request. Filled in Python (Request.new()), never by
    eplb_request_default(), which writes its own sizeof(eplb_request):
    past this struct's end under a newer library. An older library
    refuses this struct_size (EPLB_ERR_BAD_OPTION) instead of ignoring
    the fields it lacks."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("current_phy2log", ctypes.c_void_p),
        ("gpu_mask", ctypes.c_void_p),
        ("deadline_us", ctypes.c_double),
        ("max_copies_per_gpu", ctypes.c_int32),
        ("max_copies", ctypes.c_int64),
        ("stage_copies_per_gpu", ctypes.c_int32),
        ("min_gain", ctypes.c_float),
        ("schedule", ctypes.c_void_p),
        ("windows", ctypes.c_void_p),
        ("num_windows", ctypes.c_int32),
        ("forecast", ctypes.c_int),
        ("forecast_k", ctypes.c_int32),
        ("forecast_alpha", ctypes.c_float),
        ("forecast_lookback", ctypes.c_int32),
        ("forecast_choice", ctypes.c_void_p),
    ]

    @classmethod
    def new(cls) -> "Request":
        """eplb_request_default()'s request: every input absent."""
        return cls(struct_size=ctypes.sizeof(cls), deadline_us=0.0,
                   max_copies_per_gpu=-1, max_copies=-1,
                   stage_copies_per_gpu=0, min_gain=MIN_GAIN_DEFAULT,
                   forecast=0, forecast_k=FORECAST_K_DEFAULT,
                   forecast_alpha=FORECAST_ALPHA_DEFAULT,
                   forecast_lookback=FORECAST_LOOKBACK_DEFAULT)


class Stage(ctypes.Structure):
    """eplb_stage: one record of a schedule (numpy reads an array of them
    as np.dtype(Stage))."""
    _fields_ = [
        ("copies", ctypes.c_int64),
        ("max_copies_per_gpu", ctypes.c_int32),
        ("objective", ctypes.c_double),
        ("balancedness", ctypes.c_double),
    ]


class CSchedule(ctypes.Structure):
    """eplb_schedule: an output struct (struct_size is the caller's to
    set, CSchedule.new()); the arrays are the caller's."""
    _fields_ = [
        ("struct_size", ctypes.c_uint32),
        ("stage_of_slot", ctypes.c_void_p),
        ("stages", ctypes.c_void_p),
        ("max_stages", ctypes.c_int32),
        ("layer_gain", ctypes.c_void_p),
        ("layer_copies", ctypes.c_void_p),
        ("layer_order", ctypes.c_void_p),
        ("num_stages", ctypes.c_int32),
        ("copies", ctypes.c_int64),
        ("objective_before", ctypes.c_double),
        ("objective_after", ctypes.c_double),
    ]

    @classmethod
    def new(cls) -> "CSchedule":
        """A CSchedule whose struct_size is set and arrays NULL."""
        return cls(struct_size=ctypes.sizeof(cls))


# Arrays travel as plain addresses (numpy's arr.ctypes.data): building a
# typed pointer with data_as() costs microseconds per argument.
_c_int_p = _c_float_p = _c_u8_p = _c_long_p = ctypes.c_void_p
_c_size_p = ctypes.POINTER(ctypes.c_size_t)
_shape_p = ctypes.POINTER(Shape)

# name: (restype, argtypes)
_PROTOTYPES = {
    "eplb_version_string": (ctypes.c_char_p, []),
    "eplb_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "eplb_last_error": (ctypes.c_char_p, []),
    "eplb_plan_sizes": (ctypes.c_int, [_shape_p, _c_size_p, _c_size_p,
                                       _c_size_p]),
    "eplb_check_input": (ctypes.c_int, [_shape_p, _c_float_p]),
    "eplb_options_default": (None, [ctypes.POINTER(Options)]),
    "eplb_context_create": (ctypes.c_int, [ctypes.POINTER(ctypes.c_void_p),
                                           ctypes.POINTER(Options)]),
    "eplb_context_destroy": (None, [ctypes.c_void_p]),
    "eplb_context_set_options": (ctypes.c_int,
                                 [ctypes.c_void_p, ctypes.POINTER(Options)]),
    "eplb_context_backend": (ctypes.c_char_p, [ctypes.c_void_p]),
    "eplb_context_device": (ctypes.c_char_p, [ctypes.c_void_p]),
    "eplb_context_note": (ctypes.c_char_p, [ctypes.c_void_p]),
    "eplb_rebalance": (ctypes.c_int, [ctypes.c_void_p, _shape_p, _c_float_p,
                                      _c_int_p, _c_int_p, _c_int_p]),
    "eplb_rebalance_from": (ctypes.c_int, [ctypes.c_void_p, _shape_p,
                                           _c_float_p, _c_int_p, _c_u8_p,
                                           _c_int_p, _c_int_p, _c_int_p]),
    # (tests only: see Request)
    "eplb_request_default": (None, [ctypes.c_void_p]),
    "eplb_plan": (ctypes.c_int, [ctypes.c_void_p, _shape_p, _c_float_p,
                                 ctypes.POINTER(Request), _c_int_p, _c_int_p,
                                 _c_int_p]),
    "eplb_forecast_loads": (ctypes.c_int, [ctypes.c_void_p, _shape_p,
                                           ctypes.POINTER(Request),
                                           _c_float_p, _c_int_p]),
    "eplb_resolve_policy": (ctypes.c_int, [ctypes.c_int, _shape_p]),
    "eplb_plan_quality": (ctypes.c_int, [_shape_p, ctypes.c_int, _c_float_p,
                                         _c_int_p, _c_int_p,
                                         ctypes.POINTER(Quality)]),
    "eplb_copies": (ctypes.c_int, [_shape_p, _c_int_p, _c_int_p, _c_long_p,
                                   _c_long_p]),
}


def _pkg_config_libdir() -> Tuple[Optional[str], Optional[str]]:
    try:
        out = subprocess.run(
            ["pkg-config", "--variable=libdir", "eplb-cl"],
            capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, "pkg-config could not run (%s)" % exc
    if out.returncode != 0 or not out.stdout.strip():
        return None, "pkg-config knows no eplb-cl (%s)" % (
            out.stderr.strip() or "exit status %d" % out.returncode)
    return out.stdout.strip(), None


def _open() -> ctypes.CDLL:
    """The library, from the first of the three places that has it."""
    tried = []
    path = os.environ.get("EPLB_CL_LIBRARY")
    if path:
        try:
            return ctypes.CDLL(path)
        except OSError as exc:
            tried.append("EPLB_CL_LIBRARY=%s: %s" % (path, exc))
    else:
        tried.append("EPLB_CL_LIBRARY is not set")
    # The loader's own search (LD_LIBRARY_PATH, ld.so.cache, system dirs).
    names = [_SONAME]
    found = ctypes.util.find_library("eplb-cl")
    if found and found not in names:
        names.append(found)
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            tried.append("the loader, %s: %s" % (name, exc))
    libdir, why = _pkg_config_libdir()
    if libdir:
        path = os.path.join(libdir, _SONAME)
        try:
            return ctypes.CDLL(path)
        except OSError as exc:
            tried.append("pkg-config's libdir, %s: %s" % (path, exc))
    else:
        tried.append(why or "pkg-config gave no libdir")
    raise OSError(
        "libeplb-cl not found. Tried: " + "; ".join(tried) + ". Install the "
        "library (make install; then ldconfig), or set EPLB_CL_LIBRARY to "
        "the path of " + _SONAME + ", or put the directory of eplb-cl.pc "
        "in PKG_CONFIG_PATH.")


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


_LIB: Optional[ctypes.CDLL] = None


def lib() -> ctypes.CDLL:
    """The loaded library (ctypes.CDLL: calls release the GIL)."""
    global _LIB
    if _LIB is None:
        _LIB = _declare(_open())
    return _LIB
