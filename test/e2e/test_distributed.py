"""torchrun with 2 CPU processes (gloo): pretrain and finetune run unchanged under DDP, the ranks' weights stay
identical, the loss falls, and a run resumes from OUT/last.pt (what --max-restarts relies on after a dead worker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mim_perception.core.errors import ConfigError
from mim_perception.training.distributed import groups, micro_batching

COMMON = ["--cache-dir", "CACHE", "--set", "train.arch=convnext_smoke", "--set", "train.workers=0", "--set",
          "train.threads=1", "--set", "train.log_every=2", "--set", "train.checkpoint_every=5"]


def torchrun(verb: str, out: Path, cache: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mim_perception.cli", verb, "--out", str(out), *[str(cache) if a == "CACHE" else a for a in COMMON],
           *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "[rank1]" not in p.stdout   # only rank 0 logs
    return json.loads((out / "summary.json").read_text())


@pytest.mark.timeout(300)
def test_pretrain_ddp_two_ranks_identical_loss_falls_and_resumes(tmp_path: Path) -> None:
    args = ["--data", "synthetic:2:16:0:128x64", "--set", "train.batch_size=8", "--set", "pretrain.height=64",
            "--set", "pretrain.width=128", "--set", "pretrain.lr=0.003"]
    r = torchrun("pretrain", tmp_path / "pre", tmp_path / "cache", *args, "--set", "pretrain.max_steps=12")
    sums = r["rank_param_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    assert r["config"]["processes"] == 2 and r["config"]["micro_batch"] == 4 and r["config"]["accumulation"] == 1
    losses = [h["loss"] for h in r["history"]]
    assert sum(losses[-2:]) < sum(losses[:2]), losses
    assert (tmp_path / "pre" / "mim.pt").exists() and (tmp_path / "pre" / "last.pt").exists()
    # a restarted run continues from the last saved step (10), with gradient accumulation keeping the global batch
    r2 = torchrun("pretrain", tmp_path / "pre", tmp_path / "cache", *args, "--set", "pretrain.max_steps=14",
                  "--set", "train.micro_batch=2")
    assert r2["config"]["accumulation"] == 2 and r2["steps"] == 14
    assert [h["step"] for h in r2["history"]][:6] == [2, 4, 6, 8, 10, 12]   # history carried over from last.pt
    assert r2["rank_param_checksums"][0] == r2["rank_param_checksums"][1]


@pytest.mark.timeout(300)
def test_finetune_ddp_two_ranks_identical(tmp_path: Path) -> None:
    r = torchrun("finetune", tmp_path / "ft", tmp_path / "cache", "--data", "synthetic:4:8:0:128x64",
                 "--set", "train.batch_size=4", "--set", "finetune.max_steps=8", "--set", "finetune.epochs=2",
                 "--set", "augment.height=64", "--set", "augment.width=128")
    assert r["rank_param_checksums"][0] == r["rank_param_checksums"][1]
    totals = [h["total"] for h in r["history"] if "total" in h]
    assert totals[-1] < totals[0], totals
    assert (tmp_path / "ft" / "best.pt").exists() and r["best"]["epoch"] >= 1


def test_micro_batching_keeps_the_global_batch() -> None:
    assert micro_batching(16, 0, 1) == (16, 1)
    assert micro_batching(16, 0, 2) == (8, 1)
    assert micro_batching(16, 4, 2) == (4, 2)
    with pytest.raises(ConfigError):
        micro_batching(16, 3, 2)
    assert list(groups(range(7), 3)) == [[0, 1, 2], [3, 4, 5]]
