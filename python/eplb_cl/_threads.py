"""The contexts behind the convenience functions: one per thread (and per
device choice), created on first use and kept (a context keeps its built
kernels and buffers, so later calls are warm). Other options change on
the live context (eplb_context_set_options): no new context, whose
creation costs 105-137 ms on an NVIDIA GPU."""

import threading
from typing import Any, Dict, Optional

from . import _convert
from .context import Context, _shape, _sizes

_defaults: Dict[str, Any] = {}
_forecast: Dict[str, Any] = {}
_defaults_lock = threading.Lock()
_local = threading.local()

# The request's forecast keywords (Context.rebalance): set by configure,
# read by the adapters, which then pass their window axis as samples.
FORECAST_KEYS = ("forecast", "forecast_k", "forecast_alpha",
                 "forecast_lookback")


def configure(**options: Any) -> None:
    """Sets the Context options (backend, candidates, seed, ...) that the
    convenience functions (rebalance_experts and the vLLM and SGLang
    adapters) use from now on, on every thread; None removes one. The
    forecast keywords (forecast, forecast_k, forecast_alpha,
    forecast_lookback) make the SGLang and vLLM adapters plan their window
    axis for the next window instead of summing it."""
    with _defaults_lock:
        for name, value in options.items():
            table = _forecast if name in FORECAST_KEYS else _defaults
            if value is None:
                table.pop(name, None)
            else:
                table[name] = value


def forecast_options() -> Dict[str, Any]:
    """The forecast keywords configure() set ({}: the adapters sum their
    window axis)."""
    with _defaults_lock:
        return dict(_forecast)


def samples(window: Any, name: str) -> Any:
    """A [X, L, E] window without its all-zero samples (an engine's
    window holds zeros before its first steps; the library refuses an
    all-zero sample); None when every sample is zero."""
    w = _convert.to_numpy(window, name)
    keep = w.reshape(w.shape[0], -1).any(axis=1)
    if not keep.any():
        return None
    return w if keep.all() else w[keep]


# The options a context takes at creation only: which device it runs on.
_DEVICE_CHOICE = ("backend", "platform", "device", "device_type",
                  "enforce_device")


def context(**overrides: Any) -> Context:
    """This thread's context for the configured options plus overrides."""
    with _defaults_lock:
        options = dict(_defaults)
    options.update(overrides)
    device = {k: v for k, v in options.items() if k in _DEVICE_CHOICE}
    rest = {k: v for k, v in options.items() if k not in _DEVICE_CHOICE}
    key = tuple(sorted(device.items()))
    cache = getattr(_local, "contexts", None)
    if cache is None:
        cache = _local.contexts = {}
    entry = cache.get(key)
    if entry is None:
        entry = cache[key] = [Context(**options), rest]
    elif entry[1] != rest:
        entry[0].set_options(**rest)
        entry[1] = rest
    return entry[0]


def plan(weight: Any, num_replicas: int, num_groups: int, num_nodes: int,
         num_gpus: int, current: Any = None, mask: Any = None,
         request: Optional[Dict[str, Any]] = None,
         **overrides: Any) -> Any:
    """This thread's context's plan, written into the context's scratch
    arrays: for the drop-ins, which copy it into their engines' formats
    before the next call. request: Context.rebalance's migration keywords
    (min_gain, schedule, ...); with schedule=True the result is
    (plan, Schedule)."""
    w = _convert.to_numpy(weight)
    w = _convert.loads(w, 3 if w.ndim == 3 else 2)
    L, E = w.shape[-2:]
    # The sizes are checked (by Python, then by the library) before the
    # scratch arrays are sized from them.
    _sizes(_shape(L, E, num_replicas, num_groups, num_nodes, num_gpus))
    ctx = context(**overrides)
    out = ctx.scratch(L, E, int(num_replicas))
    return ctx.rebalance(w, num_replicas, num_groups, num_nodes, num_gpus,
                         current=current, mask=mask, out=out,
                         **(request or {}))
