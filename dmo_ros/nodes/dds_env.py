"""Keep DDS on this machine: LOCALHOST discovery and a ROS_DOMAIN_ID no other run holds.

Imported before rclpy by the test harness and by the `dmo-ros` sim paths. Without
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, FastDDS multicasts to 239.255.0.1.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

# Domains 100..199: clear of the default (0) and of what people usually pick by hand.
_FIRST, _LAST = 100, 199
_held_locks: list[int] = []  # file descriptors kept open for the life of the process


def claim_domain_id() -> int:
    """Lock and return a domain id that no other process on this machine has claimed."""
    lock_dir = Path(tempfile.gettempdir())
    start = _FIRST + os.getpid() % (_LAST - _FIRST + 1)
    for i in range(_LAST - _FIRST + 1):
        domain = _FIRST + (start - _FIRST + i) % (_LAST - _FIRST + 1)
        fd = os.open(lock_dir / f"dmo_ros_domain_{domain}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held_locks.append(fd)
        return domain
    raise RuntimeError(f"all ROS domain ids {_FIRST}..{_LAST} are in use on this machine")


def use_local_dds() -> int:
    """Set LOCALHOST discovery and, when unset, a fresh ROS_DOMAIN_ID; return the domain id."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if "ROS_DOMAIN_ID" not in os.environ:
        os.environ["ROS_DOMAIN_ID"] = str(claim_domain_id())
    return int(os.environ["ROS_DOMAIN_ID"])
