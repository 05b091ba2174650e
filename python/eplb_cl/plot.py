"""Pictures of a plan: python3 -m eplb_cl.plot.

    python3 -m eplb_cl.plot LOADS PLAN --num-gpus M [--current PLAN]
        [-o plan.png|plan.svg] [--title TEXT]

LOADS: the tool's load formats (SGLang's {"logical_count": [[...]]}, a
JSON array of arrays, or CSV, one layer a row). PLAN and --current: the
tool's plan JSON ({"phy2log": [[...]], ...}, as eplb-cl -o writes it) or
a bare JSON array of arrays of expert ids, -1 for an empty slot. A plan
with fewer layers than the loads is matched to the loads' layers that
are not all zero, as the tool drops those.

One figure, four panels:
* the layer x GPU load map before (the current plan; without one, the
  experts in index order, one copy each, where num_gpus divides the
  experts) and after (the plan): each GPU's load over the layer's mean
  GPU load, one colour scale for both;
* balancedness per layer (mean GPU load / max GPU load; 1 is perfect),
  before and after;
* copies per GPU: with a current plan, the expert copies the move
  performs (per layer, the distinct experts a GPU holds in the plan and
  not in the current one, summed over layers: eplb_copies' count);
  without one, the slots holding a redundant copy (an expert's second or
  later copy), summed over layers.

A GPU's load is the sum over its slots of the slot's expert's load
divided by that expert's copies in the layer (each copy serves an equal
share). The format follows the output's extension (.png, .svg; .pdf
too). matplotlib (Debian: python3-matplotlib) is imported only when a
figure is drawn; the library itself is not needed.
"""

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ._errors import EplbInputError


# ---- reading the tool's files -----------------------------------------

def read_loads(path: str) -> np.ndarray:
    """[L, E] float64 loads from the tool's load formats."""
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8-sig")
    head = text.lstrip()[:1]
    if head in ("{", "["):
        doc = json.loads(text)
        if isinstance(doc, dict):
            if "logical_count" not in doc:
                raise EplbInputError("loads", "%s: object has no "
                                     "\"logical_count\" member" % path)
            doc = doc["logical_count"]
        rows = doc
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split(",") if "," in line else line.split()
            try:
                rows.append([float(x) for x in fields])
            except ValueError:
                raise EplbInputError("loads", "%s:%d: not a row of numbers"
                                     % (path, n)) from None
    try:
        w = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EplbInputError("loads", "%s: not a matrix of numbers (%s)"
                             % (path, exc)) from None
    if w.ndim != 2 or w.size == 0:
        raise EplbInputError("loads", "%s: expected [layers][experts] "
                             "loads, got shape %s" % (path, w.shape))
    if not np.isfinite(w).all() or (w < 0).any():
        raise EplbInputError("loads", "%s: loads must be finite and >= 0"
                             % path)
    return w


def read_plan(path: str, name: str = "plan") -> np.ndarray:
    """[L, P] int64 phy2log from a plan JSON or a bare array of arrays."""
    with open(path, "rb") as f:
        doc = json.loads(f.read().decode("utf-8-sig"))
    if isinstance(doc, dict):
        if "phy2log" not in doc:
            raise EplbInputError(name, "%s: no \"phy2log\" member" % path)
        doc = doc["phy2log"]
    p = np.array(doc)
    if p.ndim != 2 or p.dtype.kind not in "iu":
        raise EplbInputError(name, "%s: expected [layers][slots] integer "
                             "expert ids" % path)
    return p.astype(np.int64)


def match_layers(weight: np.ndarray, phy2log: np.ndarray,
                 name: str = "plan") -> np.ndarray:
    """The loads' layers that the plan covers: all of them, or (when the
    plan has fewer) those not all zero, which the tool plans."""
    if phy2log.shape[0] == weight.shape[0]:
        return weight
    live = weight[weight.any(axis=1)]
    if phy2log.shape[0] == live.shape[0]:
        return live
    raise EplbInputError(name, "%s has %d layers; the loads have %d (%d "
                         "not all zero)" % (name, phy2log.shape[0],
                                           weight.shape[0], live.shape[0]))


# ---- figures of a plan ------------------------------------------------

def check_plan(phy2log: np.ndarray, experts: int, num_gpus: int,
               name: str) -> None:
    P = phy2log.shape[1]
    if num_gpus <= 0 or P % num_gpus:
        raise EplbInputError("num_gpus", "num_gpus (%d) must divide the "
                             "%s's %d slots" % (num_gpus, name, P))
    if ((phy2log < -1) | (phy2log >= experts)).any():
        raise EplbInputError(name, "%s holds ids outside -1..%d"
                             % (name, experts - 1))


def gpu_loads(weight: np.ndarray, phy2log: np.ndarray,
              num_gpus: int) -> np.ndarray:
    """[L, M]: each GPU's load, each copy of an expert serving an equal
    share of the expert's load; -1 slots carry nothing."""
    L, E = weight.shape
    rows = np.arange(L)[:, None]
    live = phy2log >= 0
    ids = np.where(live, phy2log, 0)
    cnt = np.zeros((L, E))
    np.add.at(cnt, (np.broadcast_to(rows, ids.shape)[live], ids[live]), 1)
    share = np.where(live, weight[rows, ids] / np.maximum(cnt[rows, ids], 1),
                     0.0)
    return share.reshape(L, num_gpus, -1).sum(axis=2)


def balancedness(loads: np.ndarray) -> np.ndarray:
    """[L]: mean GPU load over max GPU load (1 for an all-zero layer)."""
    top = loads.max(axis=1)
    return np.where(top > 0, loads.mean(axis=1) / np.where(top > 0, top, 1),
                    1.0)


def copies_per_gpu(current: np.ndarray, nxt: np.ndarray,
                   num_gpus: int) -> np.ndarray:
    """[M]: per layer, the distinct experts a GPU holds in nxt and not in
    current, summed over layers (eplb_copies' definition)."""
    L, P = nxt.shape
    S = P // num_gpus
    out = np.zeros(num_gpus, np.int64)
    for layer in range(L):
        for g in range(num_gpus):
            new = set(nxt[layer, g * S:(g + 1) * S].tolist()) - {-1}
            old = set(current[layer, g * S:(g + 1) * S].tolist())
            out[g] += len(new - old)
    return out


def redundant_per_gpu(phy2log: np.ndarray, num_gpus: int) -> np.ndarray:
    """[M]: slots holding an expert's second or later copy, over layers."""
    L, P = phy2log.shape
    out = np.zeros(P, np.int64)
    for layer in range(L):
        seen: Dict[int, int] = {}
        for slot, e in enumerate(phy2log[layer].tolist()):
            if e < 0:
                continue
            if seen.get(e, 0):
                out[slot] += 1
            seen[e] = seen.get(e, 0) + 1
    return out.reshape(num_gpus, -1).sum(axis=1)


def identity_plan(layers: int, experts: int,
                  num_gpus: int) -> Optional[np.ndarray]:
    """The experts in index order, one copy each, where num_gpus divides
    them (an engine's map before any rebalance); else None."""
    if num_gpus <= 0 or experts % num_gpus:
        return None
    return np.tile(np.arange(experts, dtype=np.int64), (layers, 1))


def figure(weight: Any, phy2log: Any, num_gpus: int, current: Any = None,
           title: Optional[str] = None) -> Any:
    """A matplotlib Figure of the plan (see the module's docstring).
    weight [L, E], phy2log and current [L, P] (current may have another
    slot count, e.g. before a resize); numpy, torch or lists."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    from ._convert import to_numpy
    w = np.asarray(to_numpy(weight, "weight"), dtype=np.float64)
    after = np.asarray(to_numpy(phy2log, "phy2log")).astype(np.int64)
    if w.ndim != 2 or after.ndim != 2 or after.shape[0] != w.shape[0]:
        raise EplbInputError("phy2log", "weight [L, E] and phy2log [L, P] "
                             "must have the same layers")
    L, E = w.shape
    check_plan(after, E, num_gpus, "phy2log")
    before: Optional[np.ndarray]
    if current is not None:
        before = np.asarray(to_numpy(current, "current")).astype(np.int64)
        if before.ndim != 2 or before.shape[0] != L:
            raise EplbInputError("current", "current must be [%d, slots]"
                                 % L)
        check_plan(before, E, num_gpus, "current")
        before_name = "before (current plan)"
    else:
        before = identity_plan(L, E, num_gpus)
        before_name = "before (experts in order, one copy each)"

    load_after = gpu_loads(w, after, num_gpus)
    load_before = None if before is None else gpu_loads(w, before, num_gpus)

    def relative(loads: np.ndarray) -> np.ndarray:
        mean = loads.mean(axis=1, keepdims=True)
        return np.divide(loads, mean, out=np.ones_like(loads),
                         where=mean > 0)

    rel_after = relative(load_after)
    maps: List[Tuple[str, np.ndarray]] = []
    if load_before is not None:
        maps.append((before_name, relative(load_before)))
    maps.append(("after (plan)", rel_after))
    top = max(float(m.max()) for _, m in maps)

    fig = Figure(figsize=(12, 8.5), dpi=100, layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[3, 2])
    # White at the layer's mean, blue below, red above: a balanced layer
    # is a white row.
    norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=max(top, 1.5))
    image = None
    for i, (name, m) in enumerate(maps):
        ax = fig.add_subplot(grid[0, i if len(maps) == 2 else slice(0, 2)])
        image = ax.imshow(m, aspect="auto", interpolation="nearest",
                          cmap="RdBu_r", norm=norm, origin="upper")
        ax.set_title("GPU load / layer mean, %s" % name)
        ax.set_xlabel("GPU")
        ax.set_ylabel("layer")
    fig.colorbar(image, ax=fig.axes, location="right", shrink=0.6,
                 label="GPU load / mean GPU load of the layer")

    ax = fig.add_subplot(grid[1, 0])
    layers = np.arange(L)
    if load_before is not None:
        b = balancedness(load_before)
        ax.plot(layers, b, marker=".", color="tab:gray",
                label="before (mean %.3f)" % b.mean())
    a = balancedness(load_after)
    ax.plot(layers, a, marker=".", color="tab:blue",
            label="after (mean %.3f)" % a.mean())
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("layer")
    ax.set_ylabel("mean / max GPU load")
    ax.set_title("balancedness per layer")
    ax.legend(loc="lower right")

    ax = fig.add_subplot(grid[1, 1])
    gpus = np.arange(num_gpus)
    if current is not None and before is not None:
        bars = copies_per_gpu(before, after, num_gpus)
        ax.set_title("expert copies per GPU, current -> plan (total %d)"
                     % int(bars.sum()))
    else:
        bars = redundant_per_gpu(after, num_gpus)
        ax.set_title("redundant copies per GPU, over layers (total %d)"
                     % int(bars.sum()))
    ax.bar(gpus, bars, color="tab:orange")
    ax.set_xlabel("GPU")
    ax.set_ylabel("copies")
    if title:
        fig.suptitle(title)
    return fig


def save(fig: Any, path: str, fmt: Optional[str] = None) -> None:
    """Writes the figure; the format from fmt or the path's extension."""
    fig.savefig(path, format=fmt)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m eplb_cl.plot",
        description="Draw a plan: load maps before and after, "
        "balancedness per layer, copies per GPU.")
    ap.add_argument("loads", help="loads file (JSON, SGLang's JSON, CSV)")
    ap.add_argument("plan", help="plan JSON (eplb-cl -o) or phy2log array")
    ap.add_argument("--num-gpus", type=int, required=True,
                    help="GPUs the plan's slots are split over")
    ap.add_argument("--current", help="the plan in service, to compare")
    ap.add_argument("-o", "--output", default="plan.png",
                    help="output file: .png, .svg or .pdf (default "
                    "plan.png)")
    ap.add_argument("--format", help="png, svg or pdf (default: from the "
                    "output's extension)")
    ap.add_argument("--title", help="the figure's title")
    args = ap.parse_args(argv)
    try:
        w = read_loads(args.loads)
        plan = read_plan(args.plan, "plan")
        w = match_layers(w, plan, "plan")
        current = None
        if args.current:
            current = read_plan(args.current, "current")
            if current.shape[0] != w.shape[0]:
                raise EplbInputError("current", "the current plan has %d "
                                     "layers, the plan %d"
                                     % (current.shape[0], w.shape[0]))
        fig = figure(w, plan, args.num_gpus, current, args.title)
    except (OSError, ValueError) as exc:
        print("eplb_cl.plot: %s" % exc, file=sys.stderr)
        return 1
    except ImportError as exc:
        print("eplb_cl.plot: matplotlib is needed (Debian: apt-get install "
              "python3-matplotlib): %s" % exc, file=sys.stderr)
        return 1
    save(fig, args.output, args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
