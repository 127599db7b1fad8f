"""Shared by every trainer: device, autocast, checkpoints, EMA, distributed. torch, no ROS."""
