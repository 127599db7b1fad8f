"""Deploy on the Flexiv arm, or on its simulator (the default): the driver, the camera node
with the real robot, and the policy (it starts disabled unless enable:=true). record:=true
also runs the recorder: the camera, the policy's ee_delta commands, ee_pose and the task/*
topics go to a new bag in bag_dir (<bag_dir>/pusht_<date>_<time>) until Ctrl-C.

    ros2 launch dmo_ros deploy_flexiv.launch.py checkpoint:=models/RUN       # simulated Push-T
    ros2 launch dmo_ros deploy_flexiv.launch.py checkpoint:=models/RUN sim:=false \
        robot_sn:=Rizon4-062468
    ros2 launch dmo_ros deploy_flexiv.launch.py checkpoint:=models/RUN record:=true \
        bag_dir:=rosbags/deploy                                          # and record it
    ros2 service call /policy/enable std_srvs/srv/SetBool "{data: true}"   # start driving
    ros2 service call /estop std_srvs/srv/SetBool "{data: true}"           # stop (latches)
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    sim = LaunchConfiguration("sim")
    params_file = LaunchConfiguration("params_file")
    backend = PythonExpression(["'sim' if '", sim, "'.lower() == 'true' else 'flexiv'"])
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "sim",
                default_value="true",
                choices=["true", "false"],
                description="true: the simulated Push-T table; false: the real arm and camera",
            ),
            DeclareLaunchArgument(
                "robot_sn", default_value="", description="Flexiv serial number (sim:=false)"
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("dmo_ros"), "config", "flexiv_nodes.yaml"]
                ),
                description="ROS parameter file of the nodes",
            ),
            DeclareLaunchArgument(
                "checkpoint",
                default_value="",
                description="policy to run: a run folder (models/RUN, its last.pt) or a .pt file",
            ),
            DeclareLaunchArgument(
                "enable",
                default_value="false",
                choices=["true", "false"],
                description="start driving at once (else: ros2 service call /policy/enable ...)",
            ),
            DeclareLaunchArgument(
                "rviz", default_value="false", choices=["true", "false"], description="start RViz"
            ),
            DeclareLaunchArgument(
                "record",
                default_value="false",
                choices=["true", "false"],
                description="also record the deployment (camera, commands, state, task/*)",
            ),
            DeclareLaunchArgument(
                "bag_dir", default_value="rosbags", description="folder for the new bag (record)"
            ),
            Node(
                package="dmo_ros",
                executable="flexiv_driver",
                name="flexiv_driver",
                output="screen",
                parameters=[
                    params_file,
                    {
                        "backend": ParameterValue(backend, value_type=str),
                        "robot_sn": ParameterValue(LaunchConfiguration("robot_sn"), value_type=str),
                    },
                ],
            ),
            Node(
                package="dmo_ros",
                executable="camera",
                name="camera",
                output="screen",
                parameters=[params_file],
                condition=UnlessCondition(sim),
            ),
            Node(
                package="dmo_ros",
                executable="policy",
                name="policy",
                output="screen",
                parameters=[
                    params_file,
                    {
                        "checkpoint": ParameterValue(
                            LaunchConfiguration("checkpoint"), value_type=str
                        ),
                        "enable": ParameterValue(LaunchConfiguration("enable"), value_type=bool),
                        # the simulated robot owns the clock; the policy steps on it
                        "use_sim_time": ParameterValue(sim, value_type=bool),
                    },
                ],
            ),
            # No Shutdown on the recorder's exit: deploying is the point, the bag a by-product.
            Node(
                package="dmo_ros",
                executable="recorder",
                name="recorder",
                output="screen",
                parameters=[
                    params_file,
                    {
                        "bag_dir": ParameterValue(LaunchConfiguration("bag_dir"), value_type=str),
                        "sim": ParameterValue(sim, value_type=bool),  # bag metadata, disk plan
                        "use_sim_time": ParameterValue(sim, value_type=bool),
                    },
                ],
                condition=IfCondition(LaunchConfiguration("record")),
            ),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                output="screen",
                condition=IfCondition(LaunchConfiguration("rviz")),
            ),
        ]
    )
