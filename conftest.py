"""
pytest only: run every test in its own temporary working directory, so that
trial-style C{self.mktemp()} paths (relative to the working directory) land
there instead of in the checkout.
"""

import pytest


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
