"""Learned rewards. torch, no ROS."""
