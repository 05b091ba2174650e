"""Shared helpers of the eplb_cl tests: seeded loads, the real loads, the
C tool, and a plan checker that knows the layout rules of
doc/ALGORITHM.md (section 2)."""

import json
import os
import subprocess

import numpy as np
import pytest

# DeepSeek-V3's prefill EP32 configuration (doc/ALGORITHM.md section 12).
DEEPSEEK = dict(num_replicas=288, num_groups=8, num_nodes=4, num_gpus=32)
# The golden case (doc/ALGORITHM.md section 4, from DeepSeek's README).
GOLDEN_WEIGHT = [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86],
                 [20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27]]
GOLDEN_PHY2LOG = [[5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
                  [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]]
GOLDEN_LOGCNT = [[1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1],
                 [1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1]]
DETERMINISTIC = dict(candidates=1, swap_rounds=0)


def seeded_loads(seed, layers, experts, integer=True):
    """Skewed token counts (log-normal), no all-zero layer."""
    rng = np.random.default_rng(seed)
    w = rng.lognormal(mean=5.0, sigma=1.2, size=(layers, experts))
    w = np.rint(w) + 1 if integer else w
    return w.astype(np.float32)


def workload_files():
    base = os.environ.get("EPLB_WORKLOADS_DIR")
    d = os.path.join(base, "deepseek-v3") if base else None
    if not d or not os.path.isdir(d):
        pytest.skip("real loads absent: set EPLB_WORKLOADS_DIR to the "
                    "directory holding deepseek-v3/*.json")
    return sorted(os.path.join(d, f) for f in os.listdir(d)
                  if f.endswith(".json"))


def read_workload(path):
    """SGLang's recorder JSON, all-zero (dense) layers dropped."""
    with open(path) as f:
        w = np.asarray(json.load(f)["logical_count"], dtype=np.float32)
    return w[w.any(axis=1)]


def tool_path():
    tool = os.environ.get("EPLB_CL_TOOL")
    if not tool or not os.path.exists(tool):
        pytest.skip("the eplb-cl tool is not built: EPLB_CL_TOOL names it "
                    "(make check sets it)")
    return tool


def tool_plan(tmp_path, loads, num_replicas, num_groups, num_nodes,
              num_gpus, backend="reference", candidates=64, swap_rounds=20,
              seed=0):
    """The C tool's plan for loads (a matrix, or a file path) as numpy."""
    if isinstance(loads, str):
        src = loads
    else:
        src = str(tmp_path / "loads.json")
        with open(src, "w") as f:
            json.dump(np.asarray(loads).tolist(), f)
    out = tmp_path / "plan.json"
    subprocess.run(
        [tool_path(), "-q", "--repeat", "0", "-o", str(out),
         "--backend", backend, "--candidates", str(candidates),
         "--swap-rounds", str(swap_rounds), "--seed", str(seed),
         "--num-replicas", str(num_replicas), "--num-groups",
         str(num_groups), "--num-nodes", str(num_nodes), "--num-gpus",
         str(num_gpus), src], check=True)
    with open(out) as f:
        plan = json.load(f)
    return tuple(np.asarray(plan[k], dtype=np.int32)
                 for k in ("phy2log", "log2phy", "logcnt"))


def check_plan(weight, phy2log, log2phy, logcnt, num_replicas, num_gpus,
               mask=None, width=None):
    """Every layout rule of doc/ALGORITHM.md section 2 (and of masked
    plans, section 10) holds."""
    phy2log, log2phy, logcnt = (np.asarray(a) for a in
                                (phy2log, log2phy, logcnt))
    L, E = np.asarray(weight).shape
    P = num_replicas
    width = P - E + 1 if width is None else width
    assert phy2log.shape == (L, P)
    assert log2phy.shape == (L, E, width)
    assert logcnt.shape == (L, E)
    live = np.ones(P, bool)
    if mask is not None:
        live = np.repeat(np.asarray(mask) != 0, P // num_gpus)
    assert (phy2log[:, ~live] == -1).all(), "dead GPUs' slots hold -1"
    for l in range(L):
        row = phy2log[l, live]
        assert ((row >= 0) & (row < E)).all()
        assert (np.bincount(row, minlength=E) == logcnt[l]).all()
        assert (logcnt[l] >= 1).all()
        for e in range(E):
            n = logcnt[l, e]
            slots = log2phy[l, e, :n]
            assert (phy2log[l, slots] == e).all()
            assert len(set(slots.tolist())) == n
            assert (log2phy[l, e, n:] == -1).all()
