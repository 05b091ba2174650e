"""EplbError: a failed library call, with its status and the detail."""

from . import _lib

# The names of include/eplb_cl.h's EPLB_STATUS_MAP (a test keeps them equal).
STATUS_NAMES = {
    0: "EPLB_OK",
    -1: "EPLB_ERR_NULL_ARGUMENT",
    -2: "EPLB_ERR_ZERO_SIZE",
    -3: "EPLB_ERR_GROUPS_DONT_DIVIDE",
    -4: "EPLB_ERR_TOO_FEW_REPLICAS",
    -5: "EPLB_ERR_GPUS_DONT_DIVIDE",
    -6: "EPLB_ERR_NODES_DONT_DIVIDE",
    -7: "EPLB_ERR_SIZE_OVERFLOW",
    -8: "EPLB_ERR_LOAD_NAN",
    -9: "EPLB_ERR_LOAD_INFINITE",
    -10: "EPLB_ERR_LOAD_NEGATIVE",
    -11: "EPLB_ERR_BAD_OPTION",
    -12: "EPLB_ERR_POLICY_MISMATCH",
    -13: "EPLB_ERR_OUT_OF_MEMORY",
    -14: "EPLB_ERR_NO_DEVICE",
    -15: "EPLB_ERR_KERNEL_BUILD",
    -16: "EPLB_ERR_OPENCL",
    -17: "EPLB_ERR_DEVICE_LIMIT",
    -18: "EPLB_ERR_BAD_PLAN",
    -19: "EPLB_ERR_BAD_MASK",
}


class EplbError(RuntimeError):
    """A library call failed.

    status: the negative status code; name: its EPLB_ERR_* name;
    message: eplb_strerror(status); detail: eplb_last_error() of the call
    (which argument and value, which device, the build log, what to do).
    """

    def __init__(self, status, message, detail):
        self.status = status
        self.name = STATUS_NAMES.get(status, "EPLB_ERR_UNKNOWN(%d)" % status)
        self.message = message
        self.detail = detail
        text = "%s: %s" % (self.name, message)
        if detail:
            text += ": " + detail
        super().__init__(text)


def check(status):
    """Raises EplbError for a failed status; must run on the calling
    thread right after the call (the detail is thread-local)."""
    if status >= 0:
        return status
    lib = _lib.lib()
    detail = lib.eplb_last_error() or b""
    message = lib.eplb_strerror(status) or b""
    raise EplbError(status, message.decode("utf-8", "replace"),
                    detail.decode("utf-8", "replace"))
