"""Imitation of the real clip in closed loop, as the paper measures it, by every controller we have.

    python benchmarks/imitation_bench.py [--session demo_output/mimic_demo.nwb] [--threads 1]
        [--sampling-frames 200] [--iterations 25] [--rollout-seeds 5] [--checkpoint distilled.npz]

In one run, on the same reference (the inverse-dynamics replay of the STAC registration of the
real 1000-frame clip ``rat23_dannce_clip_1000.mat``; read from ``--session`` when given, else
computed here):

1. **supervised** (baseline): the MIMIC network trained on the inverse-dynamics controls of the
   reference states only (``train_controller``, the demo's former setting: 2 x 512 encoder, LSTM
   2 x 128, 400 steps);
2. **expert**: the tracking expert (inverse dynamics + PD through the actuators, no root force);
3. **expert + sampling**: the same with predictive sampling (16 samples, 0.2 s horizon), on the
   first ``--sampling-frames`` frames (it costs about 100x the expert);
4. **distilled**: the MIMIC network distilled from the expert by DAgger (``distill_controller``
   with the demo's settings, ``--iterations`` of them: 25 by default, the bar's network, about
   26 min on one core; the demo itself runs 15), trained on the whole clip (or loaded from
   ``--checkpoint``: its training time is read from its log); imitating with its latent sampled
   (as trained, and as the demo's rollout does) and at the latent's mean;
5. **distilled, held out**: distilled on frames 0-799 only (the same settings), imitating frames
   800-999.

A network's rollout with a sampled latent is random: its row pools the episodes of
``--rollout-seeds`` rollouts (seeds 0, 1, ...; the errors are their mean), so that the median
does not rest on the three or four episodes of one rollout.

Each is a closed-loop rollout with the same termination rule (``TerminationConfig``: body error of
the keypoint-carrying bodies above 30 mm after at least 10 frames; a restart from the reference
then). Reported per row: episodes, quantiles of the episode length (the survival curve: the
proportion of episodes exceeding a duration is 1 - its quantile), mean total keypoint error and
pose error (after a rigid Procrustes alignment, no scaling), and CPU seconds per second of clip
(process CPU time of the rollout); for the trained rows, the training's wall and CPU time.
Threads: XLA, OpenMP and BLAS pinned to ``--threads`` before JAX is imported.
"""

import argparse
import os

_parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
_parser.add_argument("--session", default=None, help="a session with SimulationRollout_inverse_dynamics")
_parser.add_argument("--threads", type=int, default=1, help="intra-op threads for XLA/BLAS")
_parser.add_argument("--sampling-frames", type=int, default=200, help="frames for the sampling expert")
_parser.add_argument("--iterations", type=int, default=25, help="DAgger iterations (default 25: the bar's network)")
_parser.add_argument("--rollout-seeds", type=int, default=5, help="rollouts pooled per sampled-latent row")
_parser.add_argument("--checkpoint", default=None, help="a distilled checkpoint to evaluate instead of training")
_parser.add_argument("--skip-held-out", action="store_true", help="skip the 0-799 / 800-999 split")
_parser.add_argument("--seed", type=int, default=0)
ARGS = _parser.parse_args()

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)
os.environ["XLA_FLAGS"] = (
    f"--xla_cpu_multi_thread_eigen={'true' if ARGS.threads > 1 else 'false'} "
    f"intra_op_parallelism_threads={ARGS.threads}"
)

import platform  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402

from mimic_nwb.controller import (  # noqa: E402
    ControllerConfig,
    TrainingConfig,
    build_training_set,
    load_checkpoint,
    train_controller,  # noqa: E402
)
from mimic_nwb.demo import DEMO_CONTROLLER, DEMO_DISTILLATION  # noqa: E402
from mimic_nwb.simulate import RolloutConfig, run_rollout  # noqa: E402
from mimic_nwb.simulate.distill import distill_controller  # noqa: E402
from mimic_nwb.simulate.expert import ExpertConfig, TrackingExpert  # noqa: E402
from mimic_nwb.simulate.tracking import episode_length_quantiles  # noqa: E402

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def reference_from_session(path):
    from mimic_nwb.session import read_session
    from mimic_nwb.simulate.nwb import _reference_from_rollout, compile_body_model

    with read_session(path) as nwbfile:
        rollout = nwbfile.processing["mimic"]["SimulationRollout_inverse_dynamics"]
        model = compile_body_model(rollout.body_model)
        reference = _reference_from_rollout(rollout, 1.0 / rollout.control_timestep)
        controls = np.asarray(rollout.actuator_controls.data[:])
    return model, reference, controls


def reference_from_clip():
    """The demo's first stages on the shipped clip (create, keypoints, STAC, inverse dynamics) in a
    temporary session, then its reference."""
    import tempfile
    from pathlib import Path

    from mimic_nwb.create import SessionMetadata, create_session
    from mimic_nwb.data import data_path
    from mimic_nwb.demo import DEMO_METADATA
    from mimic_nwb.importers.keypoints import KeypointImportConfig, import_keypoints
    from mimic_nwb.simulate.nwb import inverse_dynamics
    from mimic_nwb.stac.nwb import stac

    path = Path(tempfile.mkdtemp(prefix="imitation_bench_")) / "clip.nwb"
    create_session(path, SessionMetadata.from_dict(DEMO_METADATA, source="demo metadata"))
    import_keypoints(path, data_path("rat23_dannce_clip_1000.mat"), KeypointImportConfig(skeleton="rat23", rate=50.0))
    print(stac(path).summary(), flush=True)
    print(inverse_dynamics(path).summary(), flush=True)
    return reference_from_session(path)


def row(name, results, train=None):
    """One table row from one rollout or several (their episodes pooled, errors averaged)."""
    results = results if isinstance(results, list) else [results]
    lengths = np.concatenate([r.episodes.length for r in results])
    q = episode_length_quantiles(lengths, QUANTILES)
    first = results[0]
    clip = (first.n_frames - 1) / first.frame_rate
    return {
        "controller": name + (f" ({len(results)} rollouts pooled)" if len(results) > 1 else ""),
        "frames": int(first.n_frames),
        "episodes": int(len(lengths)),
        **{f"q{int(100 * k)}": v for k, v in q.items()},
        "total_mm": 1e3 * float(np.mean([np.nanmean(r.total_error) for r in results])),
        "pose_mm": 1e3 * float(np.mean([np.nanmean(r.pose_error) for r in results])),
        "cpu_per_clip_s": float(np.mean([r.cpu_time for r in results]) / clip),
        "train": train or "",
    }


def network_rollouts(model, reference, checkpoint, config):
    """The network's closed-loop rollouts: ``--rollout-seeds`` of them with a sampled latent
    (seeds from ``config.seed`` on), one at the latent's mean (deterministic)."""
    if config.latent == "mean":
        return [run_rollout(model, reference, checkpoint, config)]
    return [
        run_rollout(model, reference, checkpoint, replace(config, seed=config.seed + k))
        for k in range(max(1, ARGS.rollout_seeds))
    ]


def trained_for(checkpoint):
    """How long a loaded checkpoint was distilled, from its training log."""
    stages = [s for s in checkpoint.training if s.get("stage") == "dagger"]
    if not stages:
        return "no DAgger stage in its training log"
    iterations = sum(len(s.get("iterations", ())) for s in stages)
    wall = sum(float(s.get("wall_time_s", 0.0)) for s in stages)
    cpu = [s["cpu_time_s"] for s in stages if "cpu_time_s" in s]
    return f"{iterations} DAgger iterations, {wall:.0f} s wall" + (f", {sum(cpu):.0f} s CPU" if cpu else "")


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, f"{time.perf_counter() - wall:.0f} s wall, {time.process_time() - cpu:.0f} s CPU"


def main():
    print(f"# imitation_bench: {platform.machine()}, {os.cpu_count()} CPUs, threads {ARGS.threads}")
    model, reference, controls = reference_from_session(ARGS.session) if ARGS.session else reference_from_clip()
    print(f"reference: {reference.n_frames} frames at {reference.frame_rate:g} Hz", flush=True)
    rows = []
    closed = RolloutConfig(mode="closed_loop", seed=ARGS.seed)

    data = build_training_set(model, reference, controls)
    supervised, took = timed(
        lambda: (
            train_controller(
                data, ControllerConfig(encoder_sizes=(512, 512)), TrainingConfig(steps=400, seed=ARGS.seed)
            ).checkpoint
        )
    )
    rows.append(
        row("supervised (inverse-dynamics controls)", network_rollouts(model, reference, supervised, closed), took)
    )
    print(rows[-1], flush=True)

    rows.append(row("expert", run_rollout(model, reference, None, RolloutConfig(mode="expert"))))
    print(rows[-1], flush=True)
    sampling = RolloutConfig(
        mode="expert", n_frames=ARGS.sampling_frames, expert=ExpertConfig(n_samples=16, horizon=0.2, seed=ARGS.seed)
    )
    rows.append(
        row(
            f"expert + sampling (16 x 0.2 s, first {ARGS.sampling_frames} frames)",
            run_rollout(model, reference, None, sampling),
        )
    )
    print(rows[-1], flush=True)

    distillation = replace(DEMO_DISTILLATION, iterations=ARGS.iterations, seed=ARGS.seed)
    if ARGS.checkpoint:
        distilled = load_checkpoint(ARGS.checkpoint)
        took = "loaded: " + trained_for(distilled)
    else:
        expert = TrackingExpert(model, reference, ExpertConfig())
        distilled, took = timed(
            lambda: distill_controller(model, reference, expert, DEMO_CONTROLLER, distillation).checkpoint
        )
    for latent in ("sample", "mean"):
        results = network_rollouts(model, reference, distilled, replace(closed, latent=latent))
        rows.append(row(f"distilled (DAgger, {ARGS.iterations} iterations), latent {latent}", results, took))
        print(rows[-1], flush=True)

    if not ARGS.skip_held_out:
        expert = TrackingExpert(model, reference, ExpertConfig())
        held, took = timed(
            lambda: (
                distill_controller(
                    model, reference, expert, DEMO_CONTROLLER, replace(distillation, stop_frame=800)
                ).checkpoint
            )
        )
        results = network_rollouts(model, reference, held, replace(closed, start_frame=800))
        rows.append(row("distilled on 0-799, imitating 800-999", results, took))
        print(rows[-1], flush=True)
        rows.append(
            row("expert on 800-999", run_rollout(model, reference, None, RolloutConfig(mode="expert", start_frame=800)))
        )

    head = [
        "controller",
        "frames",
        "episodes",
        *[f"q{int(100 * k)}" for k in QUANTILES],
        "total_mm",
        "pose_mm",
        "cpu_per_clip_s",
        "train",
    ]
    print("\n| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [
            (f"{r[h]:.2f}" if h == "cpu_per_clip_s" else f"{r[h]:.1f}") if isinstance(r[h], float) else str(r[h])
            for h in head
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        "\nEpisode lengths in frames (50 Hz); qNN: the NN-th percentile of the episode lengths "
        "(survival: a share 1 - NN/100 of episodes lasts at least that long)."
    )


if __name__ == "__main__":
    main()
