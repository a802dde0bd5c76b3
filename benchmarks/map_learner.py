"""Benchmark of the MAP learner: updates/s from the Zarr replay, and the share outside torch.

A stand-in actor writes ``--transitions`` random n-step transitions with the demo's
state shape (3 elements x 16^3 grid, float16) into a fresh store; then the real
learner (:func:`mapcvd.map.learner.run_learner`: poll the store, sum-tree sampling,
importance weights, double-DQN update, priority write-back, weight publication and
metrics every ``publish_every`` updates and at most once per ``publish_seconds``) runs ``--updates`` updates. Prints updates/s,
samples/s, the time to ingest the transitions from the store, and the share of the
update loop spent outside the torch update (sampling, importance weights, priority
write-back, weight publication, metrics). Uses CUDA when torch sees a GPU.

Usage: ``python benchmarks/map_learner.py [--updates 300] [--batch 32] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--transitions", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args()

    from mapcvd.config import load_config  # noqa: PLC0415
    from mapcvd.map.learner import run_learner  # noqa: PLC0415
    from mapcvd.map.system import replay_spec  # noqa: PLC0415
    from mapcvd.map.training_settings import TrainingSettings  # noqa: PLC0415
    from mapcvd.store import create_campaign  # noqa: PLC0415
    from mapcvd.store.replay import ActorWriter, create_replay  # noqa: PLC0415

    table = TrainingSettings.from_table(dict(
        load_config()["map"], batch=args.batch, learner_threads=args.threads, device=args.device,
        updates_per_transition=1e3, learning_starts=1, actors=1, replay_capacity=max(2048, args.transitions)))
    work = Path(tempfile.mkdtemp(prefix="map-learner-"))
    root = create_campaign(work / "bench.zarr", config={})
    spec = replay_spec(table, channels=3)
    create_replay(root, spec)
    rng = np.random.default_rng(0)
    n = args.transitions
    grid = (n, 3, spec.points, spec.points, spec.points)
    writer = ActorWriter(root, 0)
    t0 = time.perf_counter()
    writer.add_batch({
        "state": rng.random(grid, dtype=np.float32).astype(np.float16),
        "next_state": rng.random(grid, dtype=np.float32).astype(np.float16),
        "action": rng.integers(5, size=n).astype(np.int8), "reward": rng.normal(size=n).astype(np.float32),
        "discount": np.full(n, 0.95**3, np.float32), "done": np.zeros(n, bool),
        "priority0": rng.random(n).astype(np.float32) + 0.1, "episode": np.zeros(n, np.int32),
        "step": np.arange(n, dtype=np.int32), "energy": np.zeros(n, np.float32),
        "position": np.zeros((n, 3), np.float32),
    })
    writer.flush()
    write_s = time.perf_counter() - t0
    out = run_learner(root, table, deadline=1e18, seed=0, channels=3, max_updates=args.updates, poll_seconds=0.01)
    loop = out["seconds"] - out["startup_seconds"] - out["ingest_seconds"]
    outside = 1.0 - out["train_seconds"] / loop
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {out['device']}, "
          f"torch threads {args.threads}")
    print(f"actor side: {n} transitions written in {write_s:.2f} s ({n / write_s:.0f} transitions/s)")
    print(f"learner: {out['updates']} updates of batch {args.batch} in {out['seconds']:.1f} s "
          f"({out['updates'] / out['seconds']:.1f} updates/s, {out['updates'] * args.batch / out['seconds']:.0f} samples/s)")
    print(f"learner ingest of the {n} transitions from the store: {out['ingest_seconds']:.2f} s "
          f"({n / out['ingest_seconds']:.0f} transitions/s); start-up {out['startup_seconds']:.2f} s")
    print(f"update loop time outside the torch update (sampling, weights, priorities, publication): "
          f"{100 * outside:.1f} %")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
