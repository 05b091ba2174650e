"""What the Python binding adds to one rebalance, on DeepSeek's shape
(58 x 256 -> 288 slots, G=8 N=4 M=32).

    EPLB_CL_LIBRARY=.libs/libeplb-cl.so python3 python/overhead.py \\
        [--backend reference|opencl] [--deterministic] [--repeat N] [--cuda]

Times, interleaved on one warm context: the bare C call through ctypes
into preallocated arrays, Context.rebalance (conversion, checks, and new
output arrays, or the context's scratch arrays), and rebalance_experts
(DeepSeek's int64 outputs). With --cuda (torch with a CUDA device):
rebalance_experts on a CUDA int32 tensor, synchronized, as an engine
calls it, beside the same call with the outputs uploaded the way 0.2.0
did (three int64 arrays, one copy each), and the transfers alone (the
loads down, the outputs' int32 bytes up from pinned memory, widened,
synchronized): the floor of any planner that runs off the CUDA device.
Medians in us.
"""

import argparse
import ctypes
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eplb_cl  # noqa: E402
from eplb_cl import _lib, _threads  # noqa: E402

SHAPE = dict(num_replicas=288, num_groups=8, num_nodes=4, num_gpus=32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="opencl")
    ap.add_argument("--deterministic", action="store_true")
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--cuda", action="store_true")
    args = ap.parse_args()
    opts = dict(backend=args.backend)
    if args.deterministic:
        opts.update(candidates=1, swap_rounds=0)
    eplb_cl.configure(**opts)
    ctx = _threads.context()
    scratch = ctx.scratch(58, 256, 288)
    rng = np.random.default_rng(2024)
    weight = np.rint(rng.lognormal(5.0, 1.2, (58, 256))).astype(np.float32)

    lib = _lib.lib()
    shape = _lib.Shape(58, 256, 288, 8, 4, 32)
    p2l = np.empty((58, 288), np.int32)
    l2p = np.empty((58, 256, 33), np.int32)
    cnt = np.empty((58, 256), np.int32)

    def bare():
        rc = lib.eplb_rebalance(ctx._ctx, ctypes.byref(shape),
                                weight.ctypes.data, p2l.ctypes.data,
                                l2p.ctypes.data, cnt.ctypes.data)
        assert rc == 0

    calls = {
        "C call (ctypes, preallocated)": bare,
        "Context.rebalance": lambda: ctx.rebalance(weight, **SHAPE),
        "Context.rebalance(out=scratch)": lambda: ctx.rebalance(
            weight, **SHAPE, out=scratch),
        "rebalance_experts (numpy)": lambda: eplb_cl.rebalance_experts(
            weight, **SHAPE),
    }
    if args.cuda:
        import torch
        from eplb_cl import deepseek
        w_cuda = torch.from_numpy(weight).to(torch.int32).to("cuda")

        def on_cuda():
            eplb_cl.rebalance_experts(w_cuda, **SHAPE)
            torch.cuda.synchronize()

        def on_cuda_three_uploads():
            plan = _threads.plan(w_cuda, 288, 8, 4, 32)
            maxcnt = max(int(plan.logcnt.max()), 1)
            for a in (plan.phy2log.astype(np.int64),
                      np.ascontiguousarray(plan.log2phy[:, :, :maxcnt],
                                           dtype=np.int64),
                      plan.logcnt.astype(np.int64)):
                torch.from_numpy(a).to("cuda")
            torch.cuda.synchronize()

        # The floor of any host planner for a CUDA caller: the loads down,
        # the outputs' int32 bytes up (pinned), widened, synchronized.
        n_out = 58 * 288 + 58 * 256 * 4 + 58 * 256
        pinned = torch.empty(n_out, dtype=torch.int32, pin_memory=True)

        def cuda_floor():
            w_cuda.cpu()
            pinned.to("cuda", non_blocking=True).long()
            torch.cuda.synchronize()

        assert deepseek is not None
        calls["rebalance_experts (CUDA tensor)"] = on_cuda
        calls["the same, three int64 uploads"] = on_cuda_three_uploads
        calls["CUDA floor: loads down, outputs up"] = cuda_floor
    for fn in calls.values():  # warm: kernels built, buffers sized
        fn()
    times = {name: [] for name in calls}
    for _ in range(args.repeat):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e6)
    print("%s on %s, %d calls each, interleaved" % (ctx.backend, ctx.device,
                                                    args.repeat))
    base = statistics.median(times["C call (ctypes, preallocated)"])
    for name, t in times.items():
        med = statistics.median(t)
        print("  %-32s median %9.1f us  (+%.1f us)" % (name, med, med - base))


if __name__ == "__main__":
    main()
