"""eplb_cl: DeepSeek-style expert-parallel load balancing plans from
libeplb-cl, through ctypes (the GIL is released during each call).

    import eplb_cl
    phy2log, log2phy, logcnt = eplb_cl.rebalance_experts(
        weight, num_replicas=288, num_groups=8, num_nodes=4, num_gpus=32)

Context gives the full C API (options, re-planning from the current plan,
GPU masks); eplb_cl.vllm and eplb_cl.sglang adapt it to those engines.
"""

from ._errors import EplbError, STATUS_NAMES
from ._threads import configure
from .context import (BACKENDS, POLICIES, Context, Plan, PlanQuality, copies,
                      quality)
from .deepseek import rebalance_experts

__all__ = [
    "BACKENDS", "POLICIES", "Context", "EplbError", "Plan", "PlanQuality",
    "STATUS_NAMES", "configure", "copies", "library_version", "quality",
    "rebalance_experts",
]

__version__ = "0.1.0"


def library_version():
    """The version of the libeplb-cl actually loaded ("0.1.0")."""
    from ._lib import lib
    return lib().eplb_version_string().decode()
