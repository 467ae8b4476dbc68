"""STAC benchmark on the real 1000-frame DANNCE rat clip (run by hand, not part of the tests).

    python benchmarks/stac_bench.py [--workers 2] [--baseline-frames 20] [--skip-loo] [--skip-large] [--skip-dog] [--frames N]

Prints: frames/s of calibration and of pose fitting (separately) and the whole run including
start-up (interpreter, imports, model build, worker processes); physical validity beside a fit
without the floor term and the unobserved-joint prior (the registration before them): mean
keypoint error, deepest geom below the floor and its body, frames with a geom deeper than
1 mm, per-body depth; mean / median / p90 keypoint error per keypoint; the leave-one-keypoint-out error (refit all frames without keypoint k with
the calibrated offsets, measure the error at k, for every k); the share of frames with joints
pinned at their limits; peak RSS; and the baseline, the original STAC approach (per-frame
``scipy.optimize.least_squares`` with finite differences on the whole qpos) on a subset of
frames, side by side with this implementation on the same frames; and the speed on a larger
model (over 200 qpos: the rodent with every joint made a chain of up to three perpendicular
hinges, and two small hinges on each jointless tail vertebra, as published mouse models with
many small joints have), registered to the same clip; and dm_control's dog (a second quadruped
with 162 STL meshes, qpos 87) registered to keypoints generated from it with a known pose (the
site map and the generator of tests/test_body_models_foreign.py), error to the ground truth.
"""

import os

# Thread counts are set explicitly, before numpy loads BLAS: one thread per process, the
# parallelism is the worker processes.
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_var] = "1"

import time  # noqa: E402

T_IMPORT = time.perf_counter()

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
import scipy.io  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

from mimic_nwb.body_model import build_body_model, default_mjcf_path  # noqa: E402
from mimic_nwb.data import data_path  # noqa: E402
from mimic_nwb.stac import StacConfig, run_stac  # noqa: E402
from mimic_nwb.stac.fitter import PoseFitter, SolverSettings  # noqa: E402


def process_age() -> float:
    """Seconds since this process started (Linux), so start-up counts in the whole run."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/self/stat") as f:
            start = int(f.read().rsplit(")", 1)[1].split()[19]) / ticks
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) - start
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - T_IMPORT


def load_clip():
    pred = scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"]  # (T, 3, K) mm
    return pred.transpose(0, 2, 1) / 1000.0  # (T, K, 3) m


_LOO_MODEL = None


def loo_init():
    global _LOO_MODEL
    _LOO_MODEL = build_body_model(data_path("rat23_rodent_sites.yaml"))


def loo_job(args):
    """Refit every frame without keypoint k (calibrated offsets, same floor): error at k."""
    k, keypoints, offsets, up, floor = args
    bm = _LOO_MODEL
    held_out = keypoints.copy()
    held_out[:, k] = np.nan
    cfg = StacConfig(n_workers=1, up_direction=tuple(up), floor_height=floor)
    r = run_stac(held_out, bm, cfg, offsets=offsets)
    # Error at k in the model world: the same floor transform as the full fit.
    target = keypoints[:, k] @ r.world_from_input[:3, :3].T + r.world_from_input[:3, 3]
    return k, np.linalg.norm(r.model_keypoints[:, k] - target, axis=1)


def baseline(bm, keypoints_world, offsets, frames, q_start):
    """The original STAC pose step (diegoaldarondo/stac ``q_phase``): scipy least_squares
    ('trf', 2-point finite differences) over the whole qpos, bounds from the joint ranges
    widened to include 0, ftol 5e-3 (stac-mjx ``FTOL``), warm start from the previous frame.
    Its per-limb refinement passes are left out (they would only make it slower)."""
    m = bm.model
    k = len(bm.keypoint_names)
    fitter = PoseFitter(m, bm.keypoint_body_ids, offsets, np.ones(k, bool), SolverSettings())
    lower = np.full(m.nq, -np.inf)
    upper = np.full(m.nq, np.inf)
    lower[3:7], upper[3:7] = -1.0, 1.0
    for j in range(1, m.njnt):
        if m.jnt_limited[j]:
            lo, hi = m.jnt_range[j]
            lower[m.jnt_qposadr[j]], upper[m.jnt_qposadr[j]] = min(lo, 0.0), hi

    def residual(q, y):
        q = q.copy()
        q[3:7] /= np.linalg.norm(q[3:7])
        return (fitter.positions(q) - y).ravel()

    q = np.clip(q_start, lower + 1e-9, upper - 1e-9)
    out = []
    t0 = time.perf_counter()
    for t in frames:
        sol = least_squares(residual, q, bounds=(lower, upper), args=(keypoints_world[t],), method="trf", ftol=5e-3)
        q = sol.x.copy()
        q[3:7] /= np.linalg.norm(q[3:7])
        out.append(np.linalg.norm(fitter.positions(q) - keypoints_world[t], axis=1))
        q = np.clip(q, lower + 1e-9, upper - 1e-9)
    return time.perf_counter() - t0, np.array(out)


def many_joint_rodent(folder) -> Path:
    """MJCF of the rodent with more, smaller joints (qpos 222): every hinge gets up to two more
    perpendicular hinges at its anchor (at most six dofs per body, MuJoCo's limit), range
    +-20 degrees; every jointless body below the torso (tail vertebrae) two hinges of +-11.5
    degrees. Written to ``folder``; returns its path."""
    spec = mujoco.MjSpec.from_file(str(default_mjcf_path()))

    def hinge(body, name, axis, limit, pos=(0.0, 0.0, 0.0)):
        joint = body.add_joint()
        joint.name, joint.type, joint.axis, joint.pos = name, mujoco.mjtJoint.mjJNT_HINGE, axis, pos
        joint.range, joint.limited = [-limit, limit], mujoco.mjtLimited.mjLIMITED_TRUE

    for body in spec.bodies:
        hinges = [j for j in body.joints if j.type == mujoco.mjtJoint.mjJNT_HINGE]
        if not body.joints and body.parent is not None and body.parent.name not in ("world", ""):
            hinge(body, f"{body.name}_pitch", [0.0, 1.0, 0.0], 0.2)
            hinge(body, f"{body.name}_yaw", [0.0, 0.0, 1.0], 0.2)
            continue
        room = 6 - len(hinges)
        for j in hinges:
            axis = np.asarray(j.axis, dtype=float) / np.linalg.norm(j.axis)
            a = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
            a /= np.linalg.norm(a)
            for k, extra in enumerate((a, np.cross(axis, a))[: max(0, min(2, room))]):
                hinge(body, f"{j.name}_extra{k}", extra, 0.35, j.pos)
                room -= 1
    path = Path(folder) / "rodent_many_joints.xml"
    path.write_text(spec.to_xml())
    return path


def large_model(keypoints, workers):
    """STAC of the clip with the many-joint rodent: qpos, fitted dofs, speed, error, floor."""
    with tempfile.TemporaryDirectory() as folder:
        bm = build_body_model(data_path("rat23_rodent_sites.yaml"), mjcf=many_joint_rodent(folder))
    r = run_stac(keypoints, bm, StacConfig(n_workers=workers))
    tm = r.timings
    n = len(keypoints)
    depth, body = r.max_penetration
    print(
        f"\nlarger model: the rodent with more, smaller joints, qpos {bm.nq} ({r.fitted_dofs.sum()} of "
        f"{bm.nv} dofs move a keypoint), same clip, {r.n_workers} workers:"
    )
    print(
        f"  pose fitting {n / tm['pose_fitting']:.0f} frames/s ({r.iterations.mean():.1f} LM iterations per "
        f"frame), calibration {len(r.calibration_frames) * r.config.n_calibration_rounds / tm['calibration']:.0f} "
        f"frames/s, run_stac total {tm['total']:.1f} s; mean error {r.mean_error * 1000:.2f} mm; deepest geom "
        f"{depth * 1000:.2f} mm ({body})"
    )


def dog_model(workers, n_frames=300):
    """STAC of dm_control's dog on keypoints made from it: speed and error to the ground truth."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_body_models_foreign import DOG_SITE_MAP, dog_clip, dog_mjcf

    bm = build_body_model(DOG_SITE_MAP, mjcf=dog_mjcf())
    qpos, offsets, keypoints = dog_clip(bm, n_frames)
    # the generator's random joint angles put the tail inside the pelvis: no self-contact term
    r = run_stac(
        keypoints, bm, StacConfig(n_workers=workers, up_direction=(0.0, 0.0, 1.0), floor_height=0.0, contact_weight=0.0)
    )
    tm = r.timings
    to_truth = np.linalg.norm(r.model_keypoints - keypoints, axis=2) * 1000
    print(
        f"\ndog: dm_control's dog, qpos {bm.nq}, {len(bm.keypoint_names)} keypoints, {n_frames} frames from a known "
        f"pose, {r.n_workers} workers:"
    )
    print(
        f"  pose fitting {n_frames / tm['pose_fitting']:.0f} frames/s, calibration "
        f"{len(r.calibration_frames) * r.config.n_calibration_rounds / tm['calibration']:.0f} frames/s, run_stac "
        f"total {tm['total']:.1f} s; fitted keypoints to the truth: mean {to_truth.mean():.2f} mm, max "
        f"{to_truth.max():.2f} mm; root {np.linalg.norm(r.qpos[:, :3] - qpos[:, :3], axis=1).mean() * 1000:.1f} mm"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-frames", type=int, default=20)
    parser.add_argument("--skip-loo", action="store_true")
    parser.add_argument("--skip-large", action="store_true", help="skip the larger (222-qpos) model")
    parser.add_argument("--skip-dog", action="store_true", help="skip dm_control's dog")
    parser.add_argument("--frames", type=int, default=None, help="first N frames only (a quick check)")
    args = parser.parse_args()

    bm = build_body_model(data_path("rat23_rodent_sites.yaml"))
    keypoints = load_clip()[: args.frames]
    n_frames = len(keypoints)
    config = StacConfig(n_workers=args.workers)
    r = run_stac(keypoints, bm, config)
    whole = process_age()
    rss_main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    n_cal = len(r.calibration_frames) * config.n_calibration_rounds
    tm = r.timings
    print(
        f"STAC benchmark: rat23 DANNCE clip, {n_frames} frames x {len(bm.keypoint_names)} keypoints, "
        f"{r.n_workers} worker processes, 1 BLAS thread each, MuJoCo {mujoco.__version__}, "
        f"CPUs available: {os.cpu_count()}"
    )
    print(
        f"  calibration   {len(r.calibration_frames)} frames x {config.n_calibration_rounds} rounds "
        f"= {n_cal} frame fits in {tm['calibration']:.2f} s: {n_cal / tm['calibration']:.0f} frames/s"
    )
    print(
        f"  pose fitting  {n_frames} frames in {tm['pose_fitting']:.2f} s: "
        f"{n_frames / tm['pose_fitting']:.0f} frames/s "
        f"({r.iterations.mean():.1f} LM iterations per frame on average)"
    )
    print(f"  worker start-up {tm['startup']:.2f} s, floor {tm['floor']:.2f} s, run_stac total {tm['total']:.2f} s")
    print(f"  whole run incl. interpreter, imports, model build, data load: {whole:.2f} s")
    print(
        f"  floor: up {np.round(r.up_direction, 4).tolist()} "
        f"({np.degrees(np.arccos(r.up_direction[2])):.1f} deg from rig z), height {r.floor_height * 1000:.1f} mm "
        f"({r.floor_shift * 1000:+.1f} mm from the keypoint floor to the model's feet)"
    )
    print(
        f"  unobserved joints {tm['unobserved']:.2f} s, penetration and refits {tm['penetration']:.2f} s; "
        f"groups: {', '.join(f'{g} {d}' for g, d in zip(r.unobserved_groups, r.unobserved_directions))}"
    )

    free = run_stac(
        keypoints,
        bm,
        StacConfig(
            n_workers=args.workers, floor_weight=0.0, contact_weight=0.0, floor_percentile=None, unobserved_prior=False
        ),
    )
    print(
        "\nphysical validity            mean error  below the floor: deepest (body)  frames > 1 mm"
        "   self-contacts: median / deepest  frames > 1 mm   pose frames/s"
    )
    for label, res in (("without floor/contact/prior", free), ("with (default)", r)):
        depth, body = res.max_penetration
        own = res.self_penetration * 1000
        print(
            f"  {label:<27} {res.mean_error * 1000:6.3f} mm  {depth * 1000:7.2f} mm ({body:<14})"
            f"{res.frames_penetrating.sum():5d}        {np.nanmedian(own):5.2f} / {np.nanmax(own):5.2f} mm"
            f"       {int((own > 1).sum()):5d}      {n_frames / res.timings['pose_fitting']:8.0f}"
        )
    print(
        "  depth below the floor per body (mm): median over frames / max, without -> with "
        "(the 3 deepest bodies, then the 5 deepest that the keypoints place)"
    )
    order = list(np.argsort(np.nanmax(free.penetration, axis=0))[::-1])
    placed = PoseFitter(
        bm.model, bm.keypoint_body_ids, r.offsets, np.ones(len(r.offsets), bool), SolverSettings()
    ).body_determined
    ids = [mujoco.mj_name2id(bm.model, mujoco.mjtObj.mjOBJ_BODY, n) for n in free.penetration_bodies]
    shown = order[:3] + [b for b in order[3:] if placed[ids[b]]][:5]
    for b in shown:
        name = free.penetration_bodies[b]
        k = r.penetration_bodies.index(name)
        print(
            f"    {name:<22} {np.nanmedian(free.penetration[:, b]) * 1000:6.1f} / {np.nanmax(free.penetration[:, b]) * 1000:6.1f}"
            f"  ->  {np.nanmedian(r.penetration[:, k]) * 1000:5.2f} / {np.nanmax(r.penetration[:, k]) * 1000:5.2f}"
        )

    err = r.errors * 1000
    print("\nkeypoint error (mm)        mean  median   p90")
    for k, name in enumerate(r.keypoint_names):
        e = err[:, k]
        print(f"  {name:<22} {np.nanmean(e):6.2f}  {np.nanmedian(e):6.2f}  {np.nanpercentile(e, 90):5.2f}")
    print(f"  {'ALL':<22} {np.nanmean(err):6.2f}  {np.nanmedian(err):6.2f}  {np.nanpercentile(err, 90):5.2f}")

    pinned = r.at_limit[r.valid]
    print(f"\nframes with a fitted joint pinned at a limit: {r.frames_at_limit[r.valid].mean():.1%}")
    share = pinned.mean(axis=0)
    top = np.argsort(share)[::-1][:10]
    print("  per joint (share of frames at a limit; range in degrees):")
    for i in top:
        if share[i] == 0:
            break
        j = list(bm.model.jnt_qposadr).index(i)
        lo, hi = np.degrees(bm.model.jnt_range[j])
        print(f"    {bm.qpos_names[i]:<28} {share[i]:6.1%}   [{lo:6.1f}, {hi:6.1f}]")
    wide = np.zeros(bm.nq, dtype=bool)
    for j in range(1, bm.model.njnt):
        wide[bm.model.jnt_qposadr[j]] = np.degrees(np.diff(bm.model.jnt_range[j]))[0] >= 20
    print(f"  excluding joints with a range under 20 deg: {(pinned[:, wide].any(axis=1)).mean():.1%} of frames")

    if not args.skip_loo:
        t0 = time.perf_counter()
        jobs = [(k, keypoints, r.offsets, r.up_direction, r.floor_height) for k in range(len(bm.keypoint_names))]
        with ProcessPoolExecutor(
            args.workers, mp_context=multiprocessing.get_context("spawn"), initializer=loo_init
        ) as ex:
            loo = dict(ex.map(loo_job, jobs))
        print(
            f"\nleave-one-keypoint-out error (mm), all {n_frames} frames, every keypoint "
            f"({time.perf_counter() - t0:.1f} s):"
        )
        print("  keypoint               in-sample   held-out mean  median   p90")
        for k, name in enumerate(r.keypoint_names):
            e = loo[k] * 1000
            print(
                f"  {name:<22} {np.nanmean(err[:, k]):8.2f}   {np.nanmean(e):12.2f}  "
                f"{np.nanmedian(e):6.2f}  {np.nanpercentile(e, 90):5.2f}"
            )
        allloo = np.concatenate([loo[k] for k in range(len(loo))]) * 1000
        print(
            f"  {'ALL':<22} {np.nanmean(err):8.2f}   {np.nanmean(allloo):12.2f}  "
            f"{np.nanmedian(allloo):6.2f}  {np.nanpercentile(allloo, 90):5.2f}"
        )

    frames = np.arange(args.baseline_frames)
    seconds, base_err = baseline(bm, r.keypoints, r.offsets, frames, r.qpos[0])
    ours = r.errors[frames]
    print(
        f"\nbaseline (original STAC approach: scipy least_squares, finite differences, per frame, "
        f"1 process) on frames 0-{frames[-1]}, same offsets and floor:"
    )
    print(f"  {'':<32}{'frames/s':>10}{'mean error mm':>16}")
    print(f"  {'scipy least_squares (FD)':<32}{len(frames) / seconds:10.2f}{base_err.mean() * 1000:16.2f}")
    print(
        f"  {'this (LM, analytic Jacobians)':<32}{n_frames / tm['pose_fitting']:10.0f}{np.nanmean(ours) * 1000:16.2f}"
    )
    print(f"\npeak RSS: main process {rss_main:.0f} MiB, largest worker {rss_workers:.0f} MiB")
    if not args.skip_large:
        large_model(keypoints, args.workers)
    if not args.skip_dog:
        dog_model(args.workers)


if __name__ == "__main__":
    main()
