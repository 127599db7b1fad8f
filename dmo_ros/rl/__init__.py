"""DMO-SAPO and baselines. torch, no ROS."""
