"""Shared by the rule-extraction tests: one torch thread per test module (the jobs run with one)."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_thread_per_module(one_thread):
    """Every test module here runs on one thread (the shared ``one_thread`` fixture)."""
