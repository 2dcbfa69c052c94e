"""The browser tests' shared demo server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.processes import ServerProcess, start_server


@pytest.fixture(scope="session")
def shared_demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One `run.py --demo` for the browser tests that only log in, read pages or add a
    document, and hold nothing against what the others add (a start is 4-9 s of a loaded
    box). A test that opens or closes a meeting does it on a meeting of its own
    (testkit.browser.fresh_meeting, with no delegate unless the test needs one); a test
    that schedules meetings, changes people or counts what the demo holds starts a server
    of its own."""
    server = start_server("--demo", "--data-dir", str(tmp_path_factory.mktemp("e2e-shared")),
                          env={"HOPSO_FAST_HASH": "1"}, preimported=True)
    yield server
    server.stop()
