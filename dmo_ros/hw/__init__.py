"""Real robot adapters: flexivrdk, unitree_sdk2py, cameras. No ROS, no torch."""
