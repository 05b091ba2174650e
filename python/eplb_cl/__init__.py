"""eplb_cl: DeepSeek-style expert-parallel load balancing plans from
libeplb-cl, through ctypes (the GIL is released during each call).

    import eplb_cl
    phy2log, log2phy, logcnt = eplb_cl.rebalance_experts(
        weight, num_replicas=288, num_groups=8, num_nodes=4, num_gpus=32)

Context gives the full C API (options, re-planning from the current plan,
GPU masks, the migration schedule); eplb_cl.vllm and eplb_cl.sglang adapt
it to those engines.
"""

from ._errors import (STATUS_NAMES, EplbAssertionError, EplbError,
                      EplbInputError)
from ._threads import configure
from ._version import __version__
from ._lib import MIN_GAIN_DEFAULT
from .context import (BACKENDS, POLICIES, STAGE_DTYPE, Context, Plan,
                      PlanQuality, Schedule, copies, quality)
from .deepseek import rebalance_experts

__all__ = [
    "BACKENDS", "MIN_GAIN_DEFAULT", "POLICIES", "STAGE_DTYPE", "Context",
    "EplbAssertionError", "EplbError", "EplbInputError", "Plan",
    "PlanQuality", "STATUS_NAMES", "Schedule", "configure", "__version__",
    "copies", "library_version", "quality", "rebalance_experts",
]


def library_version() -> str:
    """The version of the libeplb-cl actually loaded (equal to
    __version__ when the package and the library come from one tree)."""
    from ._lib import lib
    return lib().eplb_version_string().decode()
