"""Global (diffusion) and local (RSSM) world models. torch, no ROS."""
