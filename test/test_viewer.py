"""The camera viewer: its picture drawn from real simulator frames, the node over real DDS
behind the simulated driver and the intent button, and `--view` where there is no display.

There is no display here, so the node's window is replaced by a function that keeps what
it would show; `display_problem` is what stands between a headless run and Qt's abort."""

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Bool
from support.ros_probe import Probe, Spinning

from dmo_ros import cli
from dmo_ros.errors import UserError
from dmo_ros.nodes.flexiv_driver import FlexivDriver
from dmo_ros.nodes.intent_button import IntentButtonNode
from dmo_ros.nodes.runtime import parameter_overrides
from dmo_ros.nodes.teleop import keyboard_keys
from dmo_ros.nodes.viewer import ViewerNode
from dmo_ros.nodes.window import OFF, ON, PANEL, ROW, compose
from dmo_ros.sim import make_sim
from dmo_ros.task import task_for_robot

PUSHT = task_for_robot("pusht")
KEYS = keyboard_keys(PUSHT, "image")


def upscaled_bgr(frame: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(frame[:, :, ::-1], k, axis=0), k, axis=1)


def dot(view: np.ndarray, camera_height: int) -> np.ndarray:
    """The intent dot's centre pixel in the panel below the camera."""
    return view[camera_height + ROW // 2 + 2, 16]


@pytest.fixture(scope="module")
def frames():
    """Push-T camera frames at 64 and 96 px: a new scene and one pushed for a few steps."""
    out = {}
    for size in (64, 96):
        sim = make_sim("flexiv", image_size=size, control_period=PUSHT.control_period)
        first, _ = sim.reset(seed=3)
        for _ in range(4):
            later, *_ = sim.step(np.array([0.04, 0.04], np.float32))
        sim.close()
        out[size] = (first, later)
    return out


def test_the_picture_is_the_frame_scaled_up_with_the_label_and_the_keys(frames):
    for size, k in ((64, 8), (96, 5)):  # the largest whole factor within 512 px
        for frame in frames[size]:
            off = compose(frame, False, KEYS, height=512)
            side = size * k
            assert off.shape[1] == side and off.dtype == np.uint8
            np.testing.assert_array_equal(off[:side], upscaled_bgr(frame, k))  # BGR, every pixel
            on = compose(frame, True, KEYS, height=512)
            inner = slice(4, side - 4)  # inside the green intent border
            np.testing.assert_array_equal(on[inner, inner], upscaled_bgr(frame, k)[inner, inner])
            assert (on[:3, :side] == ON).all() and (on[:side, -3:] == ON).all()
            assert tuple(dot(on, side)) == ON and tuple(dot(off, side)) == OFF
    a, b = frames[64]
    assert not np.array_equal(compose(a, False, KEYS), compose(b, False, KEYS))  # it moved

    # The keys wrap onto rows inside the width, each row with text on it.
    panel = compose(frames[64][0], False, KEYS, height=512)[512:]
    rows = (panel.shape[0] - 5) // ROW
    assert rows >= 3  # the label, then the keys on two rows or more at 512 px
    for r in range(rows):
        band = panel[r * ROW : (r + 1) * ROW]
        assert (band != PANEL).any(axis=2).sum() > 30, f"row {r} is empty"
    narrow = compose(frames[64][0], False, KEYS, height=256)
    assert narrow.shape[0] - 256 > panel.shape[0]  # half the width: more rows

    # Before the first frame and the first label: a placeholder, nothing claimed.
    empty = compose(None, None, ["auto-play drives: no keys"], height=512)
    assert empty.shape[:2] == (512 + ROW * 2 + 5, 512) and tuple(dot(empty, 512)) == OFF


def test_the_node_shows_the_latest_camera_frame_and_the_intent_label():
    """Driver (sim) -> camera/image_raw -> viewer; probe -> intent_set -> intent_button ->
    intent -> viewer: what the viewer shows is a frame the driver sent, and the label."""
    shown: list[np.ndarray] = []
    probe = Probe("viewer_probe")
    probe.listen(Image, "camera/image_raw", qos_profile_sensor_data)
    params = "flexiv_nodes.yaml"
    nodes = [
        Spinning(
            lambda c: FlexivDriver(
                context=c,
                parameter_overrides=parameter_overrides(
                    params, "flexiv_driver", backend="sim", seed=3
                ),
            )
        ),
        Spinning(
            lambda c: IntentButtonNode(
                context=c, parameter_overrides=parameter_overrides(params, "intent_button")
            )
        ),
        Spinning(
            lambda c: ViewerNode(
                show=shown.append,
                context=c,
                parameter_overrides=parameter_overrides(params, "viewer", teleop="keyboard"),
            )
        ),
    ]
    viewer = nodes[2].node

    def latest_frame_shown(intent: bool) -> bool:
        if not shown or viewer.intent is not intent:
            return False
        view = shown[-1]
        if tuple(dot(view, 512)) != (ON if intent else OFF):
            return False
        received = probe.received("camera/image_raw")[-10:]
        sent = [np.frombuffer(bytes(m.data), np.uint8).reshape(64, 64, 3) for _, m in received]
        # The centre of each 8x8 block but those the intent border may cover (the outer ones).
        seen = view[12:501:8, 12:501:8, ::-1]
        return any(np.array_equal(seen, f[1:63, 1:63]) for f in sent)

    try:
        probe.wait(lambda: latest_frame_shown(False), 30.0)
        probe.publish(Bool, "intent_set", Bool(data=True))
        probe.wait(lambda: latest_frame_shown(True), 30.0)
        assert viewer.frames >= 1
    finally:
        for n in reversed(nodes):
            n.close()
        probe.close()


def test_without_a_display_view_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, ros_context):
    """No DISPLAY, or one that does not answer (Qt would abort the process): refused before
    anything starts, in one line, with no bag left behind."""
    for display in (None, ":987"):
        if display is None:
            monkeypatch.delenv("DISPLAY", raising=False)
        else:
            monkeypatch.setenv("DISPLAY", display)
        out = tmp_path / f"bag{display is None}"
        assert cli.main(["collect", "--robot", "pusht", "--view", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dmo-ros collect: error: --view:"), err
        assert "DISPLAY" in err[0] and not out.exists()
    with pytest.raises(UserError, match="^viewer: OpenCV cannot open a window on DISPLAY=:987"):
        ViewerNode(
            context=ros_context,
            parameter_overrides=parameter_overrides("flexiv_nodes.yaml", "viewer"),
        )
