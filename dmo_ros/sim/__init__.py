"""Embedded simulated robots (gymnasium API). No ROS, no torch."""
