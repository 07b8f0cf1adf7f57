"""Tests of the sandbox (a package, so its conftest does not shadow the suite's top-level one)."""
