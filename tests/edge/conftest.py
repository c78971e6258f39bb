"""Fixtures of the edge tests: a real PostgreSQL for the store (tests/postgres_server.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.postgres_server import find_server_bin, running_server

POSTGRES_URL_ENV = "PUMP_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of an empty PostgreSQL database for this test session.

    ``PUMP_TEST_POSTGRES_URL`` names one (a server of your own); otherwise a throwaway server
    is started from the local server binaries and removed at the end of the session. Skips
    only where neither exists.
    """
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        yield url
        return
    bin_dir = find_server_bin()
    if bin_dir is None:
        pytest.skip(
            "no PostgreSQL server binaries (initdb, pg_ctl in PATH or /usr/lib/postgresql/*/bin): install them "
            f"(apt-get install postgresql; scripts/bootstrap.sh does as root) or set {POSTGRES_URL_ENV}"
        )
    with running_server(bin_dir) as server:
        yield server.url()
