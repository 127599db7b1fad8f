"""CommandGuard: the one gate every robot command passes (sim and real drivers)."""

import math

import numpy as np
import pytest

from dmo_ros.errors import UserError
from dmo_ros.hw.command_guard import BadCommand, CommandGuard

GO2 = CommandGuard([-0.4, -0.4, -1.0], [0.8, 0.4, 1.0], names=("vx", "vy", "wz"))


def test_in_range_passes_unchanged_as_a_copy():
    command = [0.1, -0.2, 0.5]
    out = GO2.check(command)
    assert out.dtype == np.float64 and out.tolist() == command
    out[0] = 9.0
    assert command[0] == 0.1


def test_out_of_range_is_clipped_per_dimension():
    assert GO2.check([3.0, -3.0, 1.5]).tolist() == [0.8, -0.4, 1.0]
    assert GO2.check(np.array([-1.0, 0.0, -7.0], dtype=np.float32)).tolist() == [-0.4, 0.0, -1.0]


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ([math.nan, 0.0, 0.0], ["non-finite", "vx"]),
        ([0.0, math.inf, -math.inf], ["non-finite", "vy, wz"]),
        ([0.1, 0.2], ["expected 3 values", "vx, vy, wz"]),
        ([[0.1, 0.2, 0.3]], ["expected 3 values"]),
        (["fast", 0, 0], ["not a list of numbers"]),
        (None, ["expected 3 values"]),
    ],
)
def test_bad_commands_are_refused_with_one_clear_line(command, words):
    with pytest.raises(BadCommand) as info:
        GO2.check(command)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    # Both a ValueError (for callers that expect one) and a UserError (exit code 2).
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)


@pytest.mark.parametrize(
    ("low", "high"),
    [([0.0, 0.0], [1.0]), ([1.0], [0.0]), ([math.nan], [1.0]), ([0.0], [math.inf])],
)
def test_bad_limits_are_a_user_error(low, high):
    with pytest.raises(UserError):
        CommandGuard(low, high)
