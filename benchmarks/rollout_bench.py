"""Closed-loop control steps per second, with recording, next to bare mj_step on the same steps.

    python benchmarks/rollout_bench.py [--frames 500] [--threads 1] [--samples 50]

The rodent body model with torque actuators; the reference is STAC on the first ``--frames``
frames of the real clip (``rat23_dannce_clip_1000.mat``) and its inverse dynamics; the
controller is the default network (encoder 2 x 1024 tanh, latent 60, LSTM 2 x 128, reference
window 5; untrained weights, which cost the same as trained ones) with the clip's normalisation.
Physics: 2 ms steps, 10 per 50 Hz control step.

Measured in one run:
1. the closed-loop rollout with recording (every layer, states, rewards), no latent resampling:
   control steps per second and the time split (physics / network / observations / other);
2. bare ``mj_step`` on the same physics steps: each control step's recorded state and control are
   set, then the same 10 steps are taken, timing the steps only;
3. the same rollout with 50-sample latent resampling per step.
The jit compilation is done before timing (and reported). Target (issue 5): network +
observations + recording <= physics time, i.e. rollout <= 2x bare physics, without resampling.
Threads: XLA, OpenMP and BLAS pinned to ``--threads`` before JAX is imported.
"""

import argparse
import os
import sys

_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_parser.add_argument("--frames", type=int, default=500, help="reference frames (<= 1000)")
_parser.add_argument("--threads", type=int, default=1, help="intra-op threads for XLA/BLAS")
_parser.add_argument("--samples", type=int, default=50, help="latent samples for resampling")
_parser.add_argument("--seed", type=int, default=0)
ARGS = _parser.parse_args()

# Thread counts must be set before numpy / JAX start their pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)
os.environ["XLA_FLAGS"] = (
    f"--xla_cpu_multi_thread_eigen={'true' if ARGS.threads > 1 else 'false'} "
    f"intra_op_parallelism_threads={ARGS.threads}"
)

import platform  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import scipy.io  # noqa: E402

from mimic_nwb.body_model import build_body_model  # noqa: E402
from mimic_nwb.controller import (  # noqa: E402
    ControllerCheckpoint,
    ControllerConfig,
    ReferenceTrajectory,
    build_training_set,
    network_from_params,
    network_params,
)
from mimic_nwb.data import data_path  # noqa: E402
from mimic_nwb.simulate import RolloutConfig, run_inverse_dynamics, run_rollout  # noqa: E402
from mimic_nwb.simulate.physics import simulation_model  # noqa: E402
from mimic_nwb.stac import StacConfig, run_stac  # noqa: E402

FPS = 50.0


def reference_and_controller(frames: int):
    body_model = build_body_model(data_path("rat23_rodent_sites.yaml"))
    pred = scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"][:frames]
    keypoints = np.transpose(pred, (0, 2, 1)) * 1e-3
    stac = run_stac(keypoints, body_model, StacConfig(n_workers=1))
    inverse = run_inverse_dynamics(stac.qpos, body_model, FPS)
    reference = ReferenceTrajectory.from_inverse_dynamics(inverse)
    data = build_training_set(body_model, reference, inverse.actuator_controls)
    config = ControllerConfig(observation=data.spec.with_statistics(data.reference, data.proprioception))
    ckpt = ControllerCheckpoint(config=config, params=network_params(network_from_params(config, seed=0)))
    return body_model, reference, ckpt


def bare_physics(body_model, rollout) -> float:
    """Seconds of mj_step alone for the rollout's physics steps (same states and controls)."""
    model = simulation_model(body_model, rollout.timestep)
    data = mujoco.MjData(model)
    elapsed = 0.0
    for i in range(rollout.n_frames - 1):  # the last frame is not simulated further
        data.qpos[:], data.qvel[:], data.act[:] = rollout.qpos[i], rollout.qvel[i], rollout.actuator_activations[i]
        data.ctrl[:] = rollout.actuator_controls[i]
        t0 = time.perf_counter()
        for _ in range(rollout.steps_per_frame):
            mujoco.mj_step(model, data)
        elapsed += time.perf_counter() - t0
    return elapsed


def report(name, rollout, physics_bare):
    steps = rollout.n_frames - 1
    t = rollout.timings
    run = rollout.wall_time - t["compile"]
    overhead = run - t["physics"]
    print(f"{name}")
    print(
        f"  control steps            {steps} ({steps * rollout.steps_per_frame} physics steps of "
        f"{rollout.timestep * 1e3:g} ms)"
    )
    print(f"  rollout                  {steps / run:8.1f} control steps/s   {1e3 * run / steps:7.3f} ms/step")
    print(f"    physics (in rollout)   {1e3 * t['physics'] / steps:7.3f} ms/step")
    print(f"    network (jitted)       {1e3 * t['network'] / steps:7.3f} ms/step")
    print(f"    observations           {1e3 * t['observations'] / steps:7.3f} ms/step")
    print(f"    other (rewards, recording, bookkeeping) {1e3 * t['other'] / steps:7.3f} ms/step")
    print(
        f"  bare mj_step, same steps {steps / physics_bare:8.1f} control steps/s   "
        f"{1e3 * physics_bare / steps:7.3f} ms/step"
    )
    print(f"  rollout / bare physics   {run / physics_bare:6.2f}x   (target <= 2x)")
    print(f"  (network + observations + recording) / physics   {overhead / physics_bare:6.2f}x   (target <= 1x)")
    print(f"  jit compile (excluded)   {t['compile']:.2f} s")
    print(
        f"  episodes                 {len(rollout.episodes)}, mean length {rollout.episodes.length.mean():.1f} frames"
    )


def main():
    print(
        f"rollout_bench: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"threads {ARGS.threads}, jax {jax.__version__} ({jax.default_backend()}), mujoco {mujoco.__version__}"
    )
    print(f"XLA_FLAGS={os.environ['XLA_FLAGS']}  OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    t0 = time.perf_counter()
    body_model, reference, ckpt = reference_and_controller(ARGS.frames)
    print(f"setup (STAC + inverse dynamics on {ARGS.frames} frames): {time.perf_counter() - t0:.1f} s")
    config = RolloutConfig(seed=ARGS.seed)

    plain = run_rollout(body_model, reference, ckpt, config)
    report("closed loop, default network, recording, no latent resampling", plain, bare_physics(body_model, plain))

    resampled = run_rollout(
        body_model, reference, ckpt, RolloutConfig(seed=ARGS.seed, resample_latent=True, latent_samples=ARGS.samples)
    )
    assert np.array_equal(resampled.qpos, plain.qpos)  # resampling does not change the rollout
    report(f"closed loop with {ARGS.samples}-sample latent resampling", resampled, bare_physics(body_model, resampled))
    return 0


if __name__ == "__main__":
    sys.exit(main())
