"""Replay a bag in RViz: `ros2 bag play` + the path/intent publisher + `rviz2 -d`.

  ros2 launch dmo_ros replay.launch.py bag:=rosbags/<run> [rate:=1.0] [loop:=false]
      [robot:=auto|flexiv|go2] [rviz:=true]

`ros2 bag play` publishes the bag's own topics (camera, actions, state, intent, ...);
`bag_replay` in mode 'viz' reads the same bag with the same timing and publishes only the
robot path (`replay/path`, nav_msgs/Path) and the intent marker (`replay/intent_marker`).
RViz opens the Push-T or push-cube view; robot:=auto picks it from the bag's metadata. Where
RViz is not installed, the launch says so in one line and replays without it.
Without a ROS install, `dmo-ros replay BAG` does both jobs in one process (mode 'all').
"""

import os

from launch.actions import DeclareLaunchArgument, ExecuteProcess, LogInfo, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def _true(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on")


def _bag_robot(bag: str) -> str:
    """The robot a bag was recorded on, from the custom data of its metadata.yaml."""
    import yaml

    try:
        with open(f"{bag}/metadata.yaml") as f:
            info = yaml.safe_load(f)["rosbag2_bagfile_information"]
        return (info.get("custom_data") or {}).get("dmo_ros.robot", "flexiv")
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return "flexiv"  # not one of ours, or cut short: the Push-T view shows the camera too


def _installed(package: str) -> bool:
    """Whether the ament index has `package`: where launch_ros looks a Node's executable up,
    so a package it lacks would abort the whole launch ("package 'rviz2' not found")."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix(package)
        return True
    except (PackageNotFoundError, OSError):  # OSError: no AMENT_PREFIX_PATH at all
        return False


def _actions(context):
    bag = LaunchConfiguration("bag").perform(context)
    rate = LaunchConfiguration("rate").perform(context)
    loop = _true(LaunchConfiguration("loop").perform(context))
    robot = LaunchConfiguration("robot").perform(context)
    if not bag:
        raise RuntimeError("bag:=<folder> is required")
    if robot == "auto":
        robot = _bag_robot(bag)
    share = FindPackageShare("dmo_ros")
    if robot == "go2":
        rviz_config = PathJoinSubstitution([share, "rviz", "push_cube.rviz"])
    else:
        rviz_config = PathJoinSubstitution([share, "rviz", "pusht.rviz"])
    play = ["ros2", "bag", "play", bag, "--rate", rate] + (["--loop"] if loop else [])
    actions = [
        ExecuteProcess(cmd=play, output="screen"),
        Node(
            package="dmo_ros",
            executable="bag_replay",
            output="screen",
            parameters=[
                {
                    "bag": bag,
                    "mode": "viz",
                    "rate": float(rate),
                    "loop": loop,
                    "start_delay_s": 0.5,  # about `ros2 bag play`'s own start-up
                }
            ],
        ),
    ]
    if not _true(LaunchConfiguration("rviz").perform(context)):
        return actions
    if not _installed("rviz2"):
        missing = "RViz is not installed (no package 'rviz2'): replaying without it"
        distro = os.environ.get("ROS_DISTRO", "<distro>")
        hint = f"apt install ros-{distro}-rviz2 for the view; rviz:=false to not ask"
        return [*actions, LogInfo(msg=f"{missing} ({hint})")]
    return [*actions, Node(package="rviz2", executable="rviz2", arguments=["-d", rviz_config])]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("bag", description="bag folder to replay"),
            DeclareLaunchArgument("rate", default_value="1.0", description="playback speed"),
            DeclareLaunchArgument("loop", default_value="false", description="start over"),
            DeclareLaunchArgument(
                "robot",
                default_value="auto",
                description="auto (from the bag) | flexiv | go2: which RViz view",
            ),
            DeclareLaunchArgument("rviz", default_value="true", description="start RViz"),
            OpaqueFunction(function=_actions),
        ]
    )
