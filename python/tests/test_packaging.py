"""The package's metadata: one version (configure.ac's AC_INIT, written
into eplb_cl/_version.py), type hints marked with py.typed, a
requires-python the tests cover, and a suite that runs from any
directory."""

import os
import re
import subprocess
import sys

import pytest

import eplb_cl

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.dirname(HERE)
ROOT = os.environ.get("EPLB_TEST_SRCDIR", os.path.dirname(PACKAGE_DIR))


def read(*parts):
    with open(os.path.join(*parts)) as f:
        return f.read()


def configure_ac_version():
    path = os.path.join(ROOT, "configure.ac")
    if not os.path.exists(path):
        pytest.skip("no configure.ac: not a source tree")
    text = read(path)
    parts = dict(re.findall(r"m4_define\(\[eplb_(major|minor|patch)\], "
                            r"\[(\d+)\]\)", text))
    if len(parts) == 3:
        return "%s.%s.%s" % (parts["major"], parts["minor"], parts["patch"])
    m = re.search(r"AC_INIT\(\[[^]]*\], \[([0-9.]+)\]", text)
    assert m, "configure.ac: no AC_INIT version found"
    return m.group(1)


def test_version_is_configure_acs():
    want = configure_ac_version()
    assert eplb_cl.__version__ == want, (
        "python/eplb_cl/_version.py says %s, configure.ac %s: run "
        "configure (it rewrites _version.py from _version.py.in)"
        % (eplb_cl.__version__, want))


def test_version_file_is_the_template_filled_in():
    template = read(PACKAGE_DIR, "eplb_cl", "_version.py.in")
    assert "@PACKAGE_VERSION@" in template
    assert read(PACKAGE_DIR, "eplb_cl", "_version.py") == template.replace(
        "@PACKAGE_VERSION@", eplb_cl.__version__)


def test_pyproject_takes_the_version_from_the_package():
    text = read(PACKAGE_DIR, "pyproject.toml")
    project, dynamic = text.split("[project]")[1].split(
        "[tool.setuptools.dynamic]")
    assert re.search(r'^dynamic = \["version"\]$', project, re.M)
    assert not re.search(r"^version = ", project.split("\n[")[0], re.M)
    assert re.search(r'^version = \{attr = "eplb_cl\._version\.'
                     r'__version__"\}$', dynamic, re.M)


def test_requires_python_is_what_runs_the_tests():
    text = read(PACKAGE_DIR, "pyproject.toml")
    m = re.search(r'^requires-python = ">=(\d+)\.(\d+)"$', text, re.M)
    assert m
    assert sys.version_info[:2] >= (int(m.group(1)), int(m.group(2)))


def test_typed_package():
    assert os.path.exists(os.path.join(PACKAGE_DIR, "eplb_cl", "py.typed"))
    text = read(PACKAGE_DIR, "pyproject.toml")
    assert re.search(r'^eplb_cl = \["py\.typed"\]$', text.split(
        "[tool.setuptools.package-data]")[1], re.M)
    import typing
    from eplb_cl import context, deepseek, sglang, vllm
    for fn in (context.Context.rebalance, context.quality, context.copies,
               deepseek.rebalance_experts, sglang.rebalance_experts,
               vllm.EplbClPolicy.preserve_intragpu_slots, eplb_cl.configure):
        hints = typing.get_type_hints(fn)
        assert "return" in hints, fn


def test_the_suite_runs_from_another_directory(tmp_path):
    # test_kernel_build reads the tree's cl/ directory: relative to its
    # own file, not to where pytest starts.
    env = {k: v for k, v in os.environ.items() if k != "EPLB_TEST_SRCDIR"}
    env["PYTHONPATH"] = PACKAGE_DIR
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         os.path.join(HERE, "test_errors.py"), "-k",
         "kernel_build or status_names"],
        cwd=str(tmp_path), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout
