"""Finds the library for the tests: ``$ULTRAMEM_LIB``, else the repo's target/debug build."""

import importlib
import os
import pathlib

import pytest

_ROOT = pathlib.Path(__file__).resolve().parents[2]
if "ULTRAMEM_LIB" not in os.environ:
    # `cargo build` puts it in target/<profile>/, `cargo test` only in target/<profile>/deps/.
    for sub in ("debug", "debug/deps", "release", "release/deps"):
        candidate = _ROOT / "target" / sub / "libultramem.so"
        if candidate.exists():
            os.environ["ULTRAMEM_LIB"] = str(candidate)
            break


def require(module):
    """Imports ``module``; a skip, or a failure when ``ULTRAMEM_REQUIRE_PYTHON_DEPS=1`` (CI)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if os.environ.get("ULTRAMEM_REQUIRE_PYTHON_DEPS") == "1":
            pytest.fail(f"{module} is required (ULTRAMEM_REQUIRE_PYTHON_DEPS=1): {e}")
        pytest.skip(f"SKIPPED: {module} is not installed ({e})")
