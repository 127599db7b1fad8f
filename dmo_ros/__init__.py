"""dmo_ros: image policies trained inside learned world models from a robot's own play data."""

__version__ = "0.1.0"
