"""DDP: two processes (gloo, loopback only) train together and average their gradients.

The test starts this file twice as a worker with torchrun's environment variables, then
replays the same three steps in one process with explicitly averaged gradients and checks
that the DDP checkpoint holds exactly those weights (and not those of one rank alone).
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

STEPS = 3
HERE = Path(__file__).resolve().parent


def setup():
    sys.path.insert(0, str(HERE))
    from wm_synthetic import sequences

    from dmo_ros.data.windows import WindowDataset
    from dmo_ros.worldmodels.train import resolve_config

    # fp32 pinned: the replay compares weights to 1e-6, and bf16 (on by default where the CPU
    # has it natively) rounds the activations differently in the workers.
    fp32 = "world_model.train.bf16=false"
    sets = ["task.image_size=32", f"world_model.train.steps={STEPS}", fp32]
    resolved = resolve_config("pusht.yaml", "tiny", sets)
    return resolved, WindowDataset(sequences(count=2, steps=40, size=32), length=5)


def worker(out: str) -> None:
    from dmo_ros.worldmodels.train import fit

    resolved, data = setup()
    fit(resolved, data, None, out, device="cpu")


def replay(ranks: list[int]) -> dict[str, torch.Tensor]:
    """The weights after STEPS steps whose gradients are the mean over `ranks`' batches."""
    from dmo_ros.training.loop import collate, step_seeds
    from dmo_ros.worldmodels.diamond import DiamondWorldModel

    resolved, data = setup()
    cfg = resolved.section.train
    torch.manual_seed(cfg.seed)
    model = DiamondWorldModel(resolved.section.model_config(resolved.task))
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for step in range(STEPS):
        grads = []
        for rank in ranks:
            seed_idx, seed_noise = step_seeds(cfg.seed, step, rank)
            idx = torch.randint(
                len(data), (cfg.batch_size,), generator=torch.Generator().manual_seed(seed_idx)
            )
            batch = collate([data[int(i)] for i in idx], torch.device("cpu"))
            model.zero_grad()
            loss, _ = model(batch, generator=torch.Generator().manual_seed(seed_noise))
            loss.backward()
            grads.append([p.grad.clone() for p in model.parameters()])
        for p, *gs in zip(model.parameters(), *grads):
            p.grad = torch.stack(gs).mean(0)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    return model.state_dict()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_ddp_averages_gradients(tmp_path):
    from dmo_ros.training.checkpoint import load_checkpoint

    port = free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ)
        env.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            GLOO_SOCKET_IFNAME="lo",
            OMP_NUM_THREADS="1",
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0, out

    ckpt = load_checkpoint(tmp_path)
    assert ckpt["step"] == STEPS
    both, alone = replay([0, 1]), replay([0])
    differs = False
    for name, value in ckpt["model"].items():
        assert torch.allclose(value, both[name], atol=1e-6), name
        differs |= not torch.allclose(value, alone[name], atol=1e-6)
    assert differs, "rank 1's gradients had no effect"


if __name__ == "__main__":
    worker(sys.argv[1])
