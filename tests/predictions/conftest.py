"""One OpenMP thread in tests: the machine is shared and busy-waiting threads only slow fits down."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _one_thread():
    with threadpool_limits(limits=1):
        yield
