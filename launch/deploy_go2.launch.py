"""Deploy on the Go2, or on its simulator (the default): the driver and the policy (it starts
disabled unless enable:=true). record:=true also runs the recorder: the front camera, the
policy's cmd_vel commands, odom and the task/* topics go to a new bag in bag_dir
(<bag_dir>/push_cube_<date>_<time>) until Ctrl-C.

    ros2 launch dmo_ros deploy_go2.launch.py checkpoint:=models/RUN                # MuJoCo
    ros2 launch dmo_ros deploy_go2.launch.py checkpoint:=models/RUN sim:=false iface:=eth0
    ros2 launch dmo_ros deploy_go2.launch.py checkpoint:=models/RUN sim:=false backend:=cmd_vel
    ros2 launch dmo_ros deploy_go2.launch.py checkpoint:=models/RUN record:=true \
        bag_dir:=rosbags/deploy                                                 # and record it
    ros2 service call /policy/enable std_srvs/srv/SetBool "{data: true}"   # start driving
    ros2 service call /estop std_srvs/srv/SetBool "{data: true}"           # stop (latches)
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    sim = LaunchConfiguration("sim")
    real_backend = LaunchConfiguration("backend")
    backend = PythonExpression(["'sim' if '", sim, "'.lower() == 'true' else '", real_backend, "'"])
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "sim",
                default_value="true",
                choices=["true", "false"],
                description="true: the simulated push-cube scene; false: the real Go2",
            ),
            DeclareLaunchArgument(
                "backend",
                default_value="unitree",
                choices=["unitree", "cmd_vel"],
                description="with sim:=false: unitree (SDK sport service) or cmd_vel (relay)",
            ),
            DeclareLaunchArgument(
                "iface", default_value="eth0", description="network interface to the Go2"
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare("dmo_ros"), "config", "go2_nodes.yaml"]
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
                executable="go2_driver",
                name="go2_driver",
                output="screen",
                parameters=[
                    LaunchConfiguration("params_file"),
                    {
                        "backend": ParameterValue(backend, value_type=str),
                        "iface": ParameterValue(LaunchConfiguration("iface"), value_type=str),
                    },
                ],
            ),
            Node(
                package="dmo_ros",
                executable="policy",
                name="policy",
                output="screen",
                parameters=[
                    LaunchConfiguration("params_file"),
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
                    LaunchConfiguration("params_file"),
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
