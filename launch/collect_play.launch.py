"""Record play data: robot driver + camera + teleop or auto-play + intent button + recorder.

  ros2 launch dmo_ros collect_play.launch.py robot:=flexiv|go2 sim:=true|false \
      teleop:=keyboard|joy|auto bag_dir:=rosbags duration:=600 time_scale:=1.0 rviz:=false \
      view:=false

sim:=true runs the embedded simulators behind the same topics (the default); sim:=false
drives the real robot (robot_sn:=... for the Flexiv, iface:=... for the Go2's network).
teleop:=keyboard opens the keyboard teleop in its own terminal (terminal:='xterm -e' by
default; any command that runs a program in a terminal works, e.g. 'gnome-terminal --').
teleop:=joy also starts joy_node (package `joy`). teleop:=auto (sim only) drives with the
scripted operator. The launch ends when the recorder closes its bag (after `duration`
seconds; 0 records until Ctrl-C). view:=true opens the viewer: the live camera (scaled
up), the intent label and the keys in an OpenCV window (it needs a display; without one the
viewer alone exits, saying so). Node parameters come from config/<robot>_nodes.yaml.
sim:=true puts every node on the simulator's clock (`use_sim_time`; the driver publishes
`/clock`), at any time_scale, so a sim run behaves the same at 1x and faster; `duration` is
then sim seconds and time_scale:=X runs the simulation X times faster than real time.
"""

from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    OpaqueFunction,
    RegisterEventHandler,
)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

ROBOTS = ("flexiv", "go2")
TELEOPS = ("keyboard", "joy", "auto")


def _true(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on")


def _given(context, backend: str, **arguments: str) -> dict:
    """Driver overrides: the backend, plus the launch arguments that were given (non-empty),
    so an unset argument never hides the value in the parameter file."""
    out = {"backend": backend}
    for param, arg in arguments.items():
        value = LaunchConfiguration(arg).perform(context)
        if value:
            out[param] = value
    return out


def _nodes(context):
    robot = LaunchConfiguration("robot").perform(context)
    sim = _true(LaunchConfiguration("sim").perform(context))
    teleop = LaunchConfiguration("teleop").perform(context)
    time_scale = float(LaunchConfiguration("time_scale").perform(context))
    if robot not in ROBOTS:
        raise RuntimeError(f"robot:={robot}: expected one of {', '.join(ROBOTS)}")
    if teleop not in TELEOPS:
        raise RuntimeError(f"teleop:={teleop}: expected one of {', '.join(TELEOPS)}")
    if teleop == "auto" and not sim:
        raise RuntimeError("teleop:=auto needs sim:=true (auto-play drives from ground truth)")
    if time_scale != 1.0 and not sim:
        raise RuntimeError(
            f"time_scale:={time_scale:g} needs sim:=true (real robots run in real time)"
        )
    clock = {"use_sim_time": sim}  # every node: a sim run is on the simulator's clock
    share = FindPackageShare("dmo_ros")
    if robot == "flexiv":
        params = PathJoinSubstitution([share, "config", "flexiv_nodes.yaml"])
        rviz_config = PathJoinSubstitution([share, "rviz", "pusht.rviz"])
    else:
        params = PathJoinSubstitution([share, "config", "go2_nodes.yaml"])
        rviz_config = PathJoinSubstitution([share, "rviz", "push_cube.rviz"])

    actions = []
    if robot == "flexiv":
        backend = "sim" if sim else "flexiv"
        actions.append(
            Node(
                package="dmo_ros",
                executable="flexiv_driver",
                output="screen",
                parameters=[
                    params,
                    _given(context, backend=backend, robot_sn="robot_sn"),
                    {**clock, "time_scale": time_scale},
                ],
            )
        )
        if not sim:  # the fixed overhead camera; the simulator renders its own
            actions.append(
                Node(
                    package="dmo_ros",
                    executable="camera",
                    output="screen",
                    parameters=[params, clock],
                )
            )
    else:
        backend = "sim" if sim else "unitree"
        actions.append(
            Node(
                package="dmo_ros",
                executable="go2_driver",
                output="screen",
                parameters=[
                    params,
                    _given(context, backend=backend, iface="iface"),
                    {**clock, "time_scale": time_scale},
                ],
            )
        )

    if teleop == "auto":
        actions.append(
            Node(
                package="dmo_ros",
                executable="auto_play",
                output="screen",
                parameters=[params, clock],
            )
        )
    elif teleop == "keyboard":
        actions.append(
            Node(
                package="dmo_ros",
                executable="teleop",
                output="screen",
                prefix=LaunchConfiguration("terminal"),  # keys need a terminal of their own
                parameters=[params, {"input": "keyboard", **clock}],
            )
        )
    else:
        actions.append(
            Node(package="joy", executable="joy_node", output="screen", parameters=[clock])
        )
        actions.append(
            Node(
                package="dmo_ros",
                executable="teleop",
                output="screen",
                parameters=[params, {"input": "joy", **clock}],
            )
        )
    actions.append(
        Node(
            package="dmo_ros",
            executable="intent_button",
            output="screen",
            parameters=[params, clock],
        )
    )

    recorder = Node(
        package="dmo_ros",
        executable="recorder",
        output="screen",
        parameters=[
            params,
            {
                "bag_dir": LaunchConfiguration("bag_dir"),
                "duration_s": float(LaunchConfiguration("duration").perform(context)),
                "sim": sim,
                **clock,
            },
        ],
    )
    actions.append(recorder)
    # The recording is the point of this launch: when the recorder is done, so is the launch.
    actions.append(
        RegisterEventHandler(
            OnProcessExit(target_action=recorder, on_exit=[EmitEvent(event=Shutdown())])
        )
    )
    if _true(LaunchConfiguration("view").perform(context)):
        actions.append(
            Node(
                package="dmo_ros",
                executable="viewer",
                output="screen",
                parameters=[params, {"teleop": teleop, **clock}],
            )
        )
    if _true(LaunchConfiguration("rviz").perform(context)):
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                arguments=["-d", rviz_config],
                parameters=[clock],
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument("robot", default_value="flexiv", description="flexiv | go2"),
            DeclareLaunchArgument(
                "sim", default_value="true", description="true: simulated robot; false: real"
            ),
            DeclareLaunchArgument(
                "teleop", default_value="auto", description="keyboard | joy | auto (sim only)"
            ),
            DeclareLaunchArgument(
                "bag_dir", default_value="rosbags", description="folder for the new bag"
            ),
            DeclareLaunchArgument(
                "duration", default_value="600.0", description="seconds to record (0: until Ctrl-C)"
            ),
            DeclareLaunchArgument(
                "time_scale",
                default_value="1.0",
                description="sim: sim seconds per wall second (e.g. 4.0: four times real time)",
            ),
            DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
            DeclareLaunchArgument(
                "view",
                default_value="false",
                description="show the camera, the intent label and the keys in a window",
            ),
            DeclareLaunchArgument(
                "robot_sn",
                default_value="",
                description="Flexiv serial (sim:=false; default: config)",
            ),
            DeclareLaunchArgument(
                "iface",
                default_value="",
                description="Go2 network interface (sim:=false; default: config)",
            ),
            DeclareLaunchArgument(
                "terminal",
                default_value="xterm -e",
                description="prefix that gives the keyboard teleop a terminal",
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
