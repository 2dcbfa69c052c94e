"""What the tests' own SFUs take from the environment, as the server does.

Test harnesses that build a `MediaConfig` themselves (tests/media/browser_interop.py,
browser_simulcast.py, testkit/cascade_node.py) honour `HOPSO_BANDWIDTH_ALLOCATION` like the
server (`--bandwidth-allocation`, README), so one variable runs every video test with the
allocator on or off; unset, `MediaConfig`'s default applies.
"""

from __future__ import annotations

import dataclasses
import os

from media import MediaConfig

ON, OFF = ("on", "1", "true", "yes"), ("off", "0", "false", "no")


def bandwidth_allocation() -> bool:
    """HOPSO_BANDWIDTH_ALLOCATION (on/off), else MediaConfig's default; ValueError if bad."""
    value = os.environ.get("HOPSO_BANDWIDTH_ALLOCATION")
    if value is None:
        default = next(f.default for f in dataclasses.fields(MediaConfig)
                       if f.name == "bandwidth_allocation")
        return bool(default)
    if value.strip().lower() in ON:
        return True
    if value.strip().lower() in OFF:
        return False
    raise ValueError(f"HOPSO_BANDWIDTH_ALLOCATION must be on or off, not {value!r}")
