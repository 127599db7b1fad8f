"""Two nodes in two processes exchange a sensor_msgs/Image over DDS (loopback only)."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np

PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("image_talker")
    pub = node.create_publisher(Image, "camera/image_raw", 10)
    frame = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    deadline = time.monotonic() + float(sys.argv[1])
    seq = 0
    while time.monotonic() < deadline:
        msg = Image(height=48, width=64, encoding="rgb8", step=64 * 3)
        msg.header.frame_id = f"cam{seq}"
        msg.data = frame.tobytes()
        pub.publish(msg)
        seq += 1
        time.sleep(0.05)
    node.destroy_node()
    rclpy.shutdown()
    """
)


def test_image_crosses_processes(ros_context):
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    talker = subprocess.Popen([sys.executable, "-c", PUBLISHER, "20"])
    node = Node("image_listener", context=ros_context)
    received: list[Image] = []
    node.create_subscription(Image, "camera/image_raw", received.append, qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 20
        while len(received) < 5 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
    finally:
        talker.kill()
        talker.wait()
        node.destroy_node()
    assert len(received) >= 5, "no images arrived from the other process"
    msg = received[-1]
    assert (msg.height, msg.width, msg.encoding) == (48, 64, "rgb8")
    image = np.frombuffer(bytes(msg.data), np.uint8).reshape(48, 64, 3)
    expected = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    np.testing.assert_array_equal(image, expected)
    assert msg.header.frame_id.startswith("cam")
