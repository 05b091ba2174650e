"""The package's errors.

EplbError: a failed library call, with its status and the detail.
EplbAssertionError: the same from the drop-ins (deepseek, vllm, sglang),
    which is also an AssertionError, as eplb.py's own shape checks are.
EplbInputError: an argument refused on the Python side, before anything
    reaches the library (a ValueError, and a TypeError for callers that
    catch that for a wrong dtype).
"""

import contextlib
from typing import Iterator

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
    -20: "EPLB_ERR_BUSY",
}


class EplbError(RuntimeError):
    """A library call failed.

    status: the negative status code; name: its EPLB_ERR_* name;
    message: eplb_strerror(status); detail: eplb_last_error() of the call
    (which argument and value, which device, the build log, what to do).
    """

    def __init__(self, status: int, message: str, detail: str) -> None:
        self.status = status
        self.name = STATUS_NAMES.get(status, "EPLB_ERR_UNKNOWN(%d)" % status)
        self.message = message
        self.detail = detail
        text = "%s: %s" % (self.name, message)
        if detail:
            text += ": " + detail
        super().__init__(text)

    def __reduce__(self):  # picklable (multiprocessing, Ray)
        return (type(self), (self.status, self.message, self.detail))


class EplbAssertionError(EplbError, AssertionError):
    """An EplbError raised by a drop-in (eplb_cl.rebalance_experts, the
    vLLM policy, the SGLang dispatcher). It is also an AssertionError:
    eplb.py, vLLM's DefaultEplbPolicy and SGLang's algorithms assert on
    shapes that do not divide, and callers (vLLM's tests among them)
    expect that type. Context.rebalance raises plain EplbError."""


class EplbInputError(ValueError, TypeError):
    """An argument refused before the library is called: a dtype of the
    wrong kind, a wrong shape, a value outside what the argument or its C
    type can hold. argument: the argument's name (also in the message).
    Nothing has been written to any output array when it is raised."""

    def __init__(self, argument: str, message: str) -> None:
        self.argument = argument
        super().__init__(message)

    def __reduce__(self):
        return (type(self), (self.argument, str(self)))


def check(status: int) -> int:
    """Raises EplbError for a failed status; must run on the calling
    thread right after the call (the detail is thread-local)."""
    if status >= 0:
        return status
    lib = _lib.lib()
    detail = lib.eplb_last_error() or b""
    message = lib.eplb_strerror(status) or b""
    raise EplbError(status, message.decode("utf-8", "replace"),
                    detail.decode("utf-8", "replace"))


@contextlib.contextmanager
def drop_in_errors() -> Iterator[None]:
    """Inside a drop-in: library errors leave as EplbAssertionError."""
    try:
        yield
    except EplbError as exc:
        if isinstance(exc, AssertionError):
            raise
        raise EplbAssertionError(exc.status, exc.message,
                                 exc.detail) from None
