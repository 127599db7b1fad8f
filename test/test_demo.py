"""`dmo-ros demo` end to end on the simulated Push-T table, at the tiny preset."""

import json
import subprocess
import sys


def demo(cwd) -> subprocess.CompletedProcess:
    args = ["demo", "--preset", "tiny", "--duration", "20", "--out", "models/demo"]
    return subprocess.run(
        [sys.executable, "-m", "dmo_ros.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_demo_runs_the_pipeline_and_says_what_it_did(tmp_path):
    out = demo(tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    for stage in ("[1/4] play data", "[2/4]", "[3/4] global world model", "[4/4]"):
        assert stage in out.stdout
    assert "demo done" in out.stdout
    assert (tmp_path / "rosbags" / "demo" / "play_train" / "metadata.yaml").is_file()
    results = json.loads((tmp_path / "models/demo/eval/world_model.json").read_text())
    assert results["summary"]["psnr_mean_all"] > 0

    # A second run reuses the bags and resumes the finished run instead of refusing it.
    again = demo(tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "reusing the bag" in again.stdout
