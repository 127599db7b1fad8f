"""World-model training: it learns, resumes exactly, checkpoints safely, refuses bad input."""

import pickle
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from play_bags import write_play_bag
from wm_synthetic import sequences

from dmo_ros import cli
from dmo_ros.data.windows import WindowDataset
from dmo_ros.errors import UserError
from dmo_ros.training.checkpoint import load_checkpoint, save_checkpoint
from dmo_ros.training.device import cpu_has_bf16
from dmo_ros.worldmodels.diamond import KIND, DiamondWorldModel
from dmo_ros.worldmodels.train import fit, resolve_config


def tiny(bf16: str, *sets: str):
    """The tiny preset at 32x32 (the synthetic data's size) with `bf16`, plus overrides."""
    return resolve_config(
        "pusht.yaml", "tiny", ["task.image_size=32", f"world_model.train.bf16={bf16}", *sets]
    )


def windows(seed: int = 0, count: int = 3):
    return WindowDataset(sequences(count=count, steps=60, size=32, seed=seed), length=5)


def dmo_ros(capsys, *args: str) -> tuple[int, str, str]:
    """`dmo-ros ARGS` in this process (the CLI's own main): (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_tiny_training_lowers_the_validation_loss(tmp_path, bf16):
    logged = []
    fit(
        tiny(bf16, "world_model.train.steps=60"),
        windows(0),
        windows(1, count=1),
        tmp_path,
        device="cpu",
        progress=lambda step, total, scalars: logged.append(scalars),
    )
    first, last = logged[0]["val/loss"], logged[-1]["val/loss"]
    assert last < 0.6 * first, (first, last)
    logs = {"train/loss", "train/grad_norm", "train/lr", "train/frames_per_s", "val/loss"}
    assert [set(s) for s in logged] == [logs] * 6  # every log_every (10) steps
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert ckpts == ["last.pt", "step_20.pt", "step_40.pt", "step_60.pt"]
    assert list((tmp_path / "tb").iterdir()), "no TensorBoard events"


@pytest.mark.skipif(
    not cpu_has_bf16(),
    reason="no native bf16 on this CPU (AVX-512 BF16 / AMX): training here runs in fp32",
)
def test_bf16_training_runs_and_learns_on_a_native_bf16_cpu(tmp_path, monkeypatch):
    from dmo_ros.training import loop

    used = []
    real_autocast = loop.autocast

    def autocast(device, enabled):
        used.append(enabled)
        return real_autocast(device, enabled)

    monkeypatch.setattr(loop, "autocast", autocast)
    logged = []
    fit(
        tiny("true", "world_model.train.steps=60"),
        windows(0),
        windows(1, count=1),
        tmp_path,
        device="cpu",
        progress=lambda step, total, scalars: logged.append(scalars),
    )
    assert used and all(used)  # every forward pass ran under bf16 autocast
    first, last = logged[0]["val/loss"], logged[-1]["val/loss"]
    assert last < 0.6 * first, (first, last)


def test_resume_continues_exactly(tmp_path, bf16):
    # Exact under either precision: both runs take the same path, step for step.
    data = windows(0)
    fit(tiny(bf16, "world_model.train.steps=6"), data, None, tmp_path / "straight", device="cpu")
    fit(tiny(bf16, "world_model.train.steps=3"), data, None, tmp_path / "resumed", device="cpu")
    fit(
        tiny(bf16, "world_model.train.steps=6"),
        data,
        None,
        tmp_path / "resumed",
        resume=True,
        device="cpu",
    )
    a = load_checkpoint(tmp_path / "straight")
    b = load_checkpoint(tmp_path / "resumed")
    assert a["step"] == b["step"] == 6
    for key in ("model", "ema"):
        sa = a[key] if key == "model" else a[key]["module"]
        sb = b[key] if key == "model" else b[key]["module"]
        for name in sa:
            assert torch.equal(sa[name], sb[name]), (key, name)
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]
    assert torch.equal(a["optimizer"]["state"][0]["exp_avg"], b["optimizer"]["state"][0]["exp_avg"])


def test_resume_refuses_another_model_and_overwriting(tmp_path, bf16):
    data = windows(0)
    fit(tiny(bf16, "world_model.train.steps=2"), data, None, tmp_path, device="cpu")
    with pytest.raises(UserError, match=r"already holds a trained run"):
        fit(tiny(bf16, "world_model.train.steps=2"), data, None, tmp_path, device="cpu")
    other = tiny(bf16, "world_model.train.steps=4", "world_model.unet.channels=[8, 32]")
    with pytest.raises(
        UserError, match=r"another model \(unet\.channels: \[8, 16\] vs \[8, 32\]\)"
    ):
        fit(other, data, None, tmp_path, resume=True, device="cpu")
    bigger = tiny(bf16, "world_model.train.steps=4", "task.image_size=64")
    with pytest.raises(UserError, match=r"image_size: 32 vs 64"):
        fit(bigger, data, None, tmp_path, resume=True, device="cpu")


def test_checkpoints_are_weights_only_and_checked(tmp_path):
    path = tmp_path / "x.pt"
    payload = {"kind": KIND, "task": "pusht", "model_config": {"a": [1, 2]}, "w": torch.ones(3)}
    save_checkpoint(path, payload)
    raw = torch.load(path, weights_only=True)
    assert raw["kind"] == KIND and torch.equal(raw["w"], torch.ones(3))
    assert load_checkpoint(path, kind=KIND, task="pusht")["model_config"] == {"a": [1, 2]}
    with pytest.raises(UserError, match="holds a 'world_model/diamond', expected a 'rssm'"):
        load_checkpoint(path, kind="rssm")
    with pytest.raises(UserError, match="trained for task 'pusht', not 'push_cube'"):
        load_checkpoint(path, task="push_cube")

    # A failed write leaves the previous checkpoint intact and no temp file behind.
    with pytest.raises(Exception):  # noqa: B017 (torch.save cannot pickle a lambda)
        save_checkpoint(path, {**payload, "w": lambda: 0})
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]

    # A pickle that would run code is refused without running it.
    evil = tmp_path / "evil.pt"
    marker = tmp_path / "pwned"
    evil.write_bytes(pickle.dumps(Evil(str(marker)), protocol=2))
    with pytest.raises(UserError, match="not a readable dmo_ros checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()
    with pytest.raises(UserError, match="no such model folder"):
        load_checkpoint(tmp_path / "missing")


class Evil:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_cli_trains_from_a_bag_and_refuses_bad_input(tmp_path, capsys, bf16):
    bag = write_play_bag(tmp_path / "play", steps=30)
    out = tmp_path / "run"
    code, stdout, stderr = dmo_ros(
        capsys, "train", "world-model", "--bags", str(bag), "--out", str(out), "--device", "cpu",
        "--preset", "tiny", "--set", f"world_model.train.bf16={bf16}",
        "--set", "world_model.train.steps=4", "--set", "world_model.train.checkpoint_every=2",
    )  # fmt: skip
    assert code == 0, stderr
    assert "world model: preset tiny (--preset)" in stdout
    assert yaml.safe_load((out / "config.yaml").read_text())["preset"] == "tiny"
    ckpts = {p.name for p in (out / "checkpoints").iterdir()}
    assert ckpts == {"last.pt", "step_2.pt", "step_4.pt"}
    assert "world model: 4 steps" in stdout

    go2 = write_play_bag(tmp_path / "go2", robot="go2", steps=10)
    bogus = ["--set", "world_model.bogus=1"]
    cases = [
        (["--bags", str(go2), "--out", str(tmp_path / "a")], "robot"),
        (["--bags", str(bag), "--out", str(tmp_path / "b"), "--set", "task.image_size=50"], "50"),
        (["--bags", str(bag), "--out", str(out)], "already holds a trained run"),
        (["--bags", str(bag), "--out", str(tmp_path / "c"), *bogus], "bogus"),
        (["--out", str(tmp_path / "d")], "--bags"),
    ]
    for args, words in cases:
        code, _, stderr = dmo_ros(capsys, "train", "world-model", *args)
        assert code == 2, (args, stderr)
        assert len(stderr.strip().splitlines()) == 1, stderr
        assert words in stderr


def test_cli_without_preset_trains_the_default_and_says_so(tmp_path, capsys, monkeypatch, bf16):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    bag = write_play_bag(tmp_path / "play", steps=30)
    out = tmp_path / "run"
    short = ["--set", "world_model.train.batch_size=2", "--set", f"world_model.train.bf16={bf16}"]
    code, stdout, stderr = dmo_ros(
        capsys, "train", "world-model", "--bags", str(bag), "--out", str(out),
        "--set", "world_model.train.steps=1", *short,
    )  # fmt: skip
    assert code == 0, stderr
    assert "world model: preset cpu (default without CUDA; --preset to choose)" in stdout
    cpu = resolve_config("pusht.yaml", "cpu").data["world_model"]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["preset"] == "cpu" and saved["world_model"]["unet"] == cpu["unet"]
    ckpt = load_checkpoint(out)
    assert ckpt["model_config"]["unet"]["channels"] == cpu["unet"]["channels"]
    assert ckpt["config"]["preset"] == "cpu"

    # Resuming without --preset continues the recorded preset, not the machine's default.
    code, stdout, stderr = dmo_ros(
        capsys, "train", "world-model", "--out", str(out), "--resume",
        "--set", "world_model.train.steps=2", *short,
    )  # fmt: skip
    assert code == 0, stderr
    assert f"world model: preset cpu (as recorded in {out / 'config.yaml'})" in stdout
    assert load_checkpoint(out)["step"] == 2


def test_default_preset_follows_the_device(monkeypatch):
    from dmo_ros.training.device import resolve_preset

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_preset(None) == ("paper", "default with CUDA; --preset to choose")
    assert resolve_preset(None, "cpu")[0] == "cpu"  # --device cpu on a GPU machine
    assert resolve_preset("tiny") == ("tiny", "--preset")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_preset(None) == ("cpu", "default without CUDA; --preset to choose")
    assert resolve_preset("paper", "cpu") == ("paper", "--preset")


def test_presets_build_and_grow():
    sizes = {}
    for preset in ("tiny", "cpu", "paper"):
        r = resolve_config("pusht.yaml", preset)
        model = DiamondWorldModel(r.section.model_config(r.task))
        sizes[preset] = (sum(p.numel() for p in model.parameters()), r.section.train.steps)
    assert sizes["tiny"][0] < sizes["cpu"][0] < sizes["paper"][0], sizes
    assert sizes["tiny"][1] < sizes["cpu"][1] < sizes["paper"][1], sizes


def test_trainer_node_preset_parameter(ros_context):
    from rclpy.parameter import Parameter

    from dmo_ros.nodes.trainer import TrainerNode

    def preset(**params):
        node = TrainerNode(
            context=ros_context,
            parameter_overrides=[Parameter(k, value=v) for k, v in {"out": "x", **params}.items()],
        )
        try:
            return node.args().preset
        finally:
            node.destroy_node()

    # auto (the default) and '' leave it to the runner, as the CLI without --preset does.
    assert preset() is None and preset(preset="auto") is None and preset(preset="") is None
    assert preset(preset="tiny") == "tiny"
    with pytest.raises(UserError, match="preset='huge'"):
        preset(preset="huge")


def test_trainer_node_trains_and_publishes_status(tmp_path, ros_context, bf16):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from dmo_ros.nodes.trainer import TrainerNode

    bag = write_play_bag(tmp_path / "play", steps=30)
    params = {
        "bags": str(bag),
        "out": str(tmp_path / "run"),
        "device": "cpu",
        "preset": "tiny",
        "set": f"world_model.train.bf16={bf16}",
    }
    node = TrainerNode(
        context=ros_context,
        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
    )
    listener = rclpy.create_node("listener", context=ros_context)
    got = []
    listener.create_subscription(DiagnosticArray, "trainer/status", got.append, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(listener)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    time.sleep(0.5)  # discovery before the first message
    try:
        assert node.train() == 0
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            m.status[0].message == "finished" for m in got
        ):
            time.sleep(0.05)
    finally:
        executor.shutdown()
        listener.destroy_node()
        node.destroy_node()
    messages = [m.status[0].message for m in got]
    assert "finished" in messages and any(m.startswith("step ") for m in messages)
    values = {kv.key for m in got for kv in m.status[0].values}
    assert {"step", "train/loss"} <= values
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_device_bf16_ema_and_overrides():
    from dmo_ros.config import apply_overrides
    from dmo_ros.training.device import cpu_has_bf16, pick_device, use_bf16
    from dmo_ros.training.ema import EMA

    cpu = pick_device("cpu")
    assert cpu.type == "cpu"
    for bad in ("tpu", "gpu0"):
        with pytest.raises(UserError):
            pick_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            pick_device("cuda:0")
    assert use_bf16("auto", cpu) == cpu_has_bf16()  # emulated bf16 is slower: only when native
    assert use_bf16(False, cpu) is False
    with pytest.raises(UserError):
        use_bf16("maybe", cpu)

    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay ramps up: min(0.5, 2/11) -> mostly the new weights
    assert torch.all(ema.module.weight > 0.5) and not ema.module.weight.requires_grad

    data = {"a": {"lr": 1.0, "name": "x"}}
    assert apply_overrides(data, ["a.lr=1e-3", "a.name=y"]) == {"a": {"lr": 1e-3, "name": "y"}}
    assert data["a"]["lr"] == 1.0  # the input is not modified
    for bad in ("a.nope=1", "a", "b.lr=2"):
        with pytest.raises(UserError):
            apply_overrides(data, [bad])
