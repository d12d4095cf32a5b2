"""The package installs with pip next to an installed library, and works from there."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pip_available():
    r = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    return r.returncode == 0


def copy_package(dest):
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    shutil.copytree(PKG, dest, ignore=shutil.ignore_patterns(
        ".build", "build", "*.egg-info", "__pycache__", ".pytest_cache", "tests"))
    return dest


def install_and_use(tmp_path, extra_args, model_path):
    if not pip_available():
        pytest.skip("pip is not installed")
    src = copy_package(tmp_path / "pkg")
    site = tmp_path / "site"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--target", str(site), *extra_args, str(src)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (site / "minerva" / "__init__.py").exists()
    assert (site / "minerva" / "py.typed").exists()
    code = textwrap.dedent(f"""
        import minerva, sys
        assert minerva.__file__.startswith({str(site)!r}), minerva.__file__
        with minerva.Engine({model_path!r}, context_tokens=256, threads=1) as e:
            print(e.generate("Once upon a time", max_tokens=4, temperature=0))
    """)
    env["PYTHONPATH"] = str(site)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def can_build_wheels_offline():
    """setuptools can build a wheel without fetching anything: it has bdist_wheel (70.1 and
    later) or the wheel package is installed."""
    r = subprocess.run([sys.executable, "-c",
                        "import setuptools, sys\n"
                        "v = tuple(int(x) for x in setuptools.__version__.split('.')[:2])\n"
                        "if v < (70, 1): import wheel\n"], capture_output=True)
    return r.returncode == 0


def test_pip_install_offline(tmp_path, model_path):
    # No network: the setuptools already installed builds it.
    if not can_build_wheels_offline():
        pytest.skip("setuptools < 70.1 without the wheel package cannot build a wheel offline "
                    "(install python3-wheel)")
    install_and_use(tmp_path, ["--no-build-isolation", "--no-index"], model_path)


@pytest.mark.skipif(os.environ.get("MINERVA_TEST_NETWORK") != "1",
                    reason="set MINERVA_TEST_NETWORK=1: pip fetches setuptools from PyPI")
def test_pip_install_with_build_isolation(tmp_path, model_path):
    install_and_use(tmp_path, [], model_path)
