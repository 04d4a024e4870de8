"""Hooks and fixtures of the whole suite; what tests import lives in ``tests/helpers.py``."""

from __future__ import annotations

import pytest

from tests.helpers import IN_CI, SHARED_PCAPS


def pytest_configure(config: pytest.Config) -> None:
    """Under CI the public captures must be there: a run without them would pass while checking less."""
    if IN_CI and not any(SHARED_PCAPS.glob("*.pcap*")):
        raise pytest.UsageError(f"CI=true but {SHARED_PCAPS} holds no captures: clone the project with ../shared "
                                "beside it (see ../shared/DESIGN.md)")
