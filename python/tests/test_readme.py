"""README.md's Python example runs and prints what it says."""

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def readme_example():
    root = os.environ.get("EPLB_TEST_SRCDIR", os.path.join(HERE, "..", ".."))
    with open(os.path.join(root, "README.md")) as f:
        text = f.read()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    return blocks[0]


def test_readme_example_runs():
    code = readme_example()
    assert len(code.strip().splitlines()) == 5
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    r = subprocess.run([sys.executable, "-c", code], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert re.match(r"\(58, 288\) \(58, 256, \d+\) \[288 288 288\]$",
                    lines[0]), lines
    assert 0.5 < float(lines[1]) <= 1.0
