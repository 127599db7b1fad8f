"""rosbag2 files, play data and training windows. No ROS runtime."""
