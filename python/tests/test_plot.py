"""python3 -m eplb_cl.plot draws a plan from the tool's files: PNG and
SVG, checked by their headers; the figures' numbers match the library's
metrics."""

import json
import os
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import eplb_cl
from conftest import DETERMINISTIC, seeded_loads, tool_plan

pytest.importorskip("matplotlib", reason="matplotlib is not installed "
                    "(Debian: python3-matplotlib)")

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.dirname(HERE)
SHAPE = (24, 4, 2, 6)  # P, G, N, M for 16 experts


@pytest.fixture
def files(tmp_path):
    """Loads (SGLang's format, one all-zero layer that the tool drops), a
    current plan and a plan re-made from it, in the tool's formats."""
    old = seeded_loads(80, 5, 16)
    new = np.rint(old * seeded_loads(81, 5, 16) / 200).astype(np.float32)
    new[2] = 0  # a dense layer: all zero
    with eplb_cl.Context(backend="reference", **DETERMINISTIC) as c:
        live = new[new.any(axis=1)]
        cur = c.rebalance(old[new.any(axis=1)], *SHAPE).phy2log
        plan = c.rebalance(live, *SHAPE, current=cur)
    (tmp_path / "loads.json").write_text(json.dumps(
        {"logical_count": new.tolist(), "other": 1}))
    (tmp_path / "plan.json").write_text(json.dumps(
        {k: v.tolist() for k, v in plan._asdict().items()}))
    (tmp_path / "current.json").write_text(json.dumps(cur.tolist()))
    return tmp_path, live, cur, plan.phy2log


def run_plot(*args):
    env = dict(os.environ, PYTHONPATH=PACKAGE_DIR,
               PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "eplb_cl.plot", *args],
                          env=env, capture_output=True, text=True)


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_png_and_svg(files):
    d, _, _, _ = files
    r = run_plot(str(d / "loads.json"), str(d / "plan.json"), "--num-gpus",
                 "6", "--current", str(d / "current.json"), "-o",
                 str(d / "plan.png"), "--title", "a small case")
    assert r.returncode == 0, r.stderr
    width, height = png_size(d / "plan.png")
    assert width >= 800 and height >= 600
    assert os.path.getsize(d / "plan.png") > 20000
    r = run_plot(str(d / "loads.json"), str(d / "plan.json"), "--num-gpus",
                 "6", "-o", str(d / "plan.svg"))
    assert r.returncode == 0, r.stderr
    root = ET.parse(str(d / "plan.svg")).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = (d / "plan.svg").read_text()
    assert "balancedness per layer" in text or "<path" in text


def test_a_plan_from_the_tool(files, tmp_path):
    d, live, _, _ = files
    csv = tmp_path / "loads.csv"
    csv.write_text("\n".join(",".join("%g" % v for v in row)
                             for row in live))
    tool_plan(tmp_path, live, *SHAPE)  # writes tmp_path/plan.json
    r = run_plot(str(csv), str(tmp_path / "plan.json"), "--num-gpus", "6",
                 "-o", str(tmp_path / "tool.svg"))
    assert r.returncode == 0, r.stderr
    assert ET.parse(str(tmp_path / "tool.svg")).getroot().tag.endswith("svg")


def test_errors_name_the_problem(files):
    d, _, _, _ = files
    r = run_plot(str(d / "loads.json"), str(d / "plan.json"), "--num-gpus",
                 "5", "-o", str(d / "x.png"))
    assert r.returncode == 1 and "num_gpus (5) must divide" in r.stderr
    (d / "short.json").write_text("[[0, 1]]")
    r = run_plot(str(d / "loads.json"), str(d / "short.json"), "--num-gpus",
                 "1", "-o", str(d / "x.png"))
    assert r.returncode == 1 and "1 layers" in r.stderr
    assert not os.path.exists(d / "x.png")


def test_the_figures_numbers_are_the_librarys(files):
    from eplb_cl import plot
    _, live, cur, plan = files
    loads = plot.gpu_loads(live.astype(np.float64), plan, 6)
    logcnt = np.stack([np.bincount(r, minlength=16) for r in plan])
    q = eplb_cl.quality(live, plan, logcnt, 4, 2, 6)
    b = plot.balancedness(loads)
    assert abs(b.mean() - q.balancedness_mean) < 1e-9
    assert abs(b.min() - q.balancedness_worst) < 1e-9
    total, per_gpu = eplb_cl.copies(cur, plan, 16, 6)
    np.testing.assert_array_equal(plot.copies_per_gpu(cur, plan, 6),
                                  per_gpu)
    fig = plot.figure(live, plan, 6, current=cur)
    assert len(fig.axes) == 5  # two maps, a colour bar, two charts
    assert any(("total %d" % total) in ax.get_title() for ax in fig.axes)
