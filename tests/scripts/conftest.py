"""Fixtures shared by the tests of scripts/."""

import pytest
from helpers import load_script


@pytest.fixture(scope="module")
def levers():
    """scripts/levers.py as a module."""
    return load_script("levers")
