"""Real robot adapters: flexivrdk, unitree_sdk2py, cameras. No ROS, no torch.

Kept light (no SDK imports here): the Flexiv adapter must import on Python 3.12 with
numpy and flexivrdk only.
"""

from dmo_ros.errors import UserError


class ConnectError(UserError):
    """A robot that cannot be reached or made ready: one line naming it and the problem."""
