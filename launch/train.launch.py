"""Train a model from play-data bags with the `trainer` node (same code as `dmo-ros train`).

  ros2 launch dmo_ros train.launch.py what:=world-model preset:=cpu \
      bags:=rosbags/pusht_play out:=models/pusht_wm [config:=/path/to/pusht.yaml] [resume:=true]

Progress is published on `trainer/status` (diagnostic_msgs/DiagnosticArray); TensorBoard
logs and checkpoints go to <out>/. The launch ends when the training ends.
"""

from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument(
            "what", default_value="world-model", description="world-model | reward | rssm | policy"
        ),
        DeclareLaunchArgument(
            "config",
            default_value=PathJoinSubstitution(
                [FindPackageShare("dmo_ros"), "config", "pusht.yaml"]
            ),
            description="task config file (Push-T by default)",
        ),
        DeclareLaunchArgument(
            "preset",
            default_value="auto",
            description="tiny | cpu | paper | auto (paper with CUDA)",
        ),
        DeclareLaunchArgument("bags", description="play-data bag folders (space-separated)"),
        DeclareLaunchArgument("out", description="run folder to write, e.g. models/pusht_wm"),
        DeclareLaunchArgument("resume", default_value="false", description="continue a run"),
        DeclareLaunchArgument("device", default_value="auto", description="auto | cpu | cuda[:N]"),
    ]
    trainer = Node(
        package="dmo_ros",
        executable="trainer",
        output="screen",
        parameters=[
            {
                "what": LaunchConfiguration("what"),
                "config": LaunchConfiguration("config"),
                "preset": LaunchConfiguration("preset"),
                "bags": ParameterValue(LaunchConfiguration("bags"), value_type=str),
                "out": LaunchConfiguration("out"),
                "resume": ParameterValue(LaunchConfiguration("resume"), value_type=bool),
                "device": LaunchConfiguration("device"),
            }
        ],
    )
    shutdown = RegisterEventHandler(
        OnProcessExit(target_action=trainer, on_exit=[EmitEvent(event=Shutdown())])
    )
    return LaunchDescription([*arguments, trainer, shutdown])
