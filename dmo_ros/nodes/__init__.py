"""ROS 2 nodes: thin wiring of topics, parameters and services to the cores."""
