"""STAC core: synthetic ground truth made with the real rodent model, and the real rat clip.

Tolerances (stated once here, asserted below). Keypoint noise is Gaussian, sigma = 1 mm per
axis, so the mean distance between a noisy and a true keypoint is sigma * sqrt(8 / pi) = 1.6 mm.
With 44 fitted degrees of freedom against 69 numbers per frame the model absorbs part of the
noise, so the error to the *noisy* keypoints is expected below that, and the error to the
*true* keypoints about as large (both ~1.1-1.3 mm measured).

- error to the noisy keypoints: between 0.5x and 1.0x the noise level (1.6 mm);
- error to the true keypoints: mean <= 1.5 mm, 99th percentile <= 5 mm;
- offsets: on the keypoints the pose cannot absorb, the calibration must move the offsets
  toward the truth (mean error <= 0.8x the starting error and <= 3 mm). Offsets are identifiable
  only up to motions a joint can undo (e.g. the three skull keypoints rotated together about
  the neck), which is why STAC regularises some of them; the regularised ones (true = initial
  here) must stay within 3 mm (regularisation weight 0.1);
- root position within 3 mm on average; heading within 2 degrees on average, 6 at most (the
  torso's heading trades against the redundant spine joints);
- noise-free keypoints with known offsets, any heading, lost track every frame: < 0.5 mm.
"""

from types import SimpleNamespace

import mujoco
import numpy as np
import pytest
import scipy.io

from mimic_nwb.body_model import build_body_model, set_site_offsets
from mimic_nwb.data import data_path
from mimic_nwb.stac import MissingKeypointWarning, StacConfig, model_keypoint_positions, run_stac, widest_series
from mimic_nwb.stac.arena import model_floor_clearance
from mimic_nwb.stac.fitter import PoseFitter, SolverSettings
from mimic_nwb.stac.geometry import GeomSupport, body_penetration, floor_contact_geoms, self_contact_depth
from mimic_nwb.stac.unobserved import UnobservedPrior

NOISE = 0.001  # m, per axis
NOISE_DISTANCE = NOISE * np.sqrt(8 / np.pi)  # mean length of a 3D Gaussian noise vector
QUICK = dict(n_workers=1, n_calibration_frames=60, n_calibration_rounds=4)
# Keypoints already z-up. No self-contact term: the random joint angles of the synthetic truth
# put some of the body's geoms inside others (a real animal's do not), and the term would pull
# the fit away from that truth.
WORLD = dict(up_direction=(0.0, 0.0, 1.0), floor_height=0.0, contact_weight=0.0)


@pytest.fixture(scope="module")
def rat():
    return build_body_model(data_path("rat23_rodent_sites.yaml"))


def synthetic_clip(bm, n_frames, seed=0, amplitude=0.6, turns=1.0, offset_sd=0.003):
    """Ground truth from the rodent model itself.

    Every limited hinge follows a sinusoid (0.3-1 Hz at 50 Hz) inside its range, around 0 (or
    inside the middle half of the range); the root walks a 10 cm circle, turning ``turns`` full
    turns (every heading), at the height that puts its lowest geom, the tail's aside, exactly on
    the floor (z = 0) in every frame: physically valid, and the floor term is active (noise
    pushes that geom below the floor in about half the frames). The unobserved joints stay at
    rest: the tail hangs through the floor, and the prior must lift it. Offsets = the site
    map's, moved by ``offset_sd`` per axis except for the regularised keypoints.

    Returns qpos (T, nq), offsets (K, 3), keypoints (T, K, 3) (noise-free), metres.
    """
    rng = np.random.default_rng(seed)
    m = bm.model
    t = np.arange(n_frames) / 50.0
    qpos = np.tile(m.qpos0, (n_frames, 1))
    for j in range(1, m.njnt):
        if m.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE or not m.jnt_limited[j]:
            continue
        lo, hi = m.jnt_range[j]
        center = np.clip(0.0, lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo))
        amp = amplitude * min(center - lo, hi - center)
        phase = rng.uniform(0, 2 * np.pi)
        qpos[:, m.jnt_qposadr[j]] = center + amp * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t + phase)
    heading = rng.uniform(0, 2 * np.pi) + 2 * np.pi * turns * np.arange(n_frames) / n_frames
    qpos[:, 0] = 0.1 * np.cos(heading)
    qpos[:, 1] = 0.1 * np.sin(heading)
    qpos[:, 3] = np.cos(heading / 2)
    qpos[:, 6] = np.sin(heading / 2)
    qpos[:, 2] -= lowest_geom(bm, qpos, tail=False)
    regularized = np.isin(bm.keypoint_names, bm.site_map.regularized_keypoints)
    offsets = bm.initial_offsets + np.where(regularized[:, None], 0.0, rng.normal(0, offset_sd, (len(regularized), 3)))
    return qpos, offsets, model_keypoint_positions(bm, qpos, offsets)


def lowest_geom(bm, qpos, tail=True):
    """(T,) height (m) of the lowest geom that can touch the floor in each pose (qpos (T, nq)),
    the tail's (bodies vertebra_C*) left out when ``tail`` is False."""
    m = bm.model
    geoms = floor_contact_geoms(m)
    if not tail:
        geoms = [g for g in geoms if not m.body(m.geom_bodyid[g]).name.startswith("vertebra_C")]
    support, data = GeomSupport(m, geoms), mujoco.MjData(m)
    out = []
    for q in np.atleast_2d(qpos):
        data.qpos[:] = q
        mujoco.mj_kinematics(m, data)
        out.append(support.heights(data).min())
    return np.array(out)


def heading_of(qpos):
    qw, qz = qpos[..., 3], qpos[..., 6]  # rotations about z only in the ground truth
    return 2 * np.arctan2(qz, qw)


@pytest.fixture(scope="module")
def synthetic(rat):
    rng = np.random.default_rng(7)
    qpos, offsets, clean = synthetic_clip(rat, 120, seed=1)
    noisy = clean + rng.normal(0, NOISE, clean.shape)
    noisy[rng.random(noisy.shape[:2]) < 0.05] = np.nan  # 5 % missing keypoints
    noisy[30:32, 4:] = np.nan  # two frames with only 4 keypoints: invalid
    result = run_stac(noisy, rat, StacConfig(**QUICK, **WORLD))
    return dict(qpos=qpos, offsets=offsets, clean=clean, noisy=noisy, result=result)


def test_synthetic_keypoints_recovered(synthetic):
    r, noisy, clean = synthetic["result"], synthetic["noisy"], synthetic["clean"]
    expected_valid = np.ones(len(noisy), bool)
    expected_valid[30:32] = False
    np.testing.assert_array_equal(r.valid, expected_valid)
    assert np.isnan(r.qpos[~r.valid]).all() and np.isnan(r.model_keypoints[~r.valid]).all()
    assert np.isnan(r.errors[~r.valid]).all()
    missing = np.isnan(noisy).any(2)
    assert np.isnan(r.errors[missing]).all() and np.isfinite(r.errors[~missing & r.valid[:, None]]).all()

    assert 0.5 * NOISE_DISTANCE < r.mean_error < 1.0 * NOISE_DISTANCE
    to_truth = np.linalg.norm(r.model_keypoints - clean, axis=2)[r.valid]
    assert to_truth.mean() < 0.0015
    assert np.percentile(to_truth, 99) < 0.005


def test_widest_series_is_the_widest_the_result_has(synthetic, rat):
    """The rat's widest stored series is qpos (74 columns); on a body with more floor-touching
    bodies than joints, the penetration series."""
    result = synthetic["result"]
    widths = (result.qpos.shape[1], result.errors.shape[1], result.penetration.shape[1])
    assert widest_series(rat) == max(widths) == 74
    links = "".join(f'<body name="b{i}" pos="0.02 0 0"><geom type="sphere" size="0.01"/>' for i in range(9))
    xml = f"""<mujoco><worldbody><geom name="floor" type="plane" size="1 1 .1"/>
      <body name="root" pos="0 0 0.1"><freejoint/><geom type="sphere" size="0.01"/>{links}{"</body>" * 9}
      </body></worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    (bodies, depth) = body_penetration(model, model.qpos0[None])
    welded = SimpleNamespace(model=model, keypoint_names=("a", "b"))
    assert model.nq == 7 and len(bodies) == depth.shape[1] == 10 and widest_series(welded) == 10


def test_synthetic_offsets_and_root_recovered(synthetic, rat):
    r, truth = synthetic["result"], synthetic["offsets"]
    assert r.calibrated and len(r.calibration_frames) == 60
    start = np.linalg.norm(r.initial_offsets - truth, axis=1)
    final = np.linalg.norm(r.offsets - truth, axis=1)
    assert final.mean() < 0.8 * start.mean() and final.mean() < 0.003
    regularized = np.isin(r.keypoint_names, rat.site_map.regularized_keypoints)
    assert final[regularized].max() < 0.003

    q, qt = r.qpos[r.valid], synthetic["qpos"][r.valid]
    assert np.linalg.norm(q[:, :3] - qt[:, :3], axis=1).mean() < 0.003
    # The torso's heading trades against the spine joints (redundant chain): looser than the
    # keypoints.
    dh = np.degrees(np.abs(np.angle(np.exp(1j * (heading_of(q) - heading_of(qt))))))
    assert dh.mean() < 2.0 and dh.max() < 6.0


def test_joint_limits_respected(synthetic, rat):
    r, m = synthetic["result"], rat.model
    q = r.qpos[r.valid]
    limited = np.flatnonzero(m.jnt_limited & (m.jnt_type == mujoco.mjtJoint.mjJNT_HINGE))
    adr = m.jnt_qposadr[limited]
    assert np.all(q[:, adr] >= m.jnt_range[limited, 0] - 1e-9)
    assert np.all(q[:, adr] <= m.jnt_range[limited, 1] + 1e-9)
    np.testing.assert_allclose(np.linalg.norm(q[:, 3:7], axis=1), 1.0, atol=1e-9)
    # at_limit only flags fitted scalar joints; root columns never.
    assert not r.at_limit[:, :7].any()
    assert r.frames_at_limit.shape == (len(q) + 2,)


def test_any_heading_and_lost_track(rat):
    """Frames 45 degrees apart in heading with jumps in position: warm start fails every
    frame, the rigid root refit must find each pose."""
    qpos, offsets, clean = synthetic_clip(rat, 8, seed=3, amplitude=0.3, turns=8 * 45 / 360)
    qpos[:, 0] += np.arange(8) * 0.05
    clean = model_keypoint_positions(rat, qpos, offsets)
    r = run_stac(clean, rat, StacConfig(n_workers=1, **WORLD), offsets=offsets)
    assert not r.calibrated and len(r.calibration_frames) == 0
    np.testing.assert_array_equal(r.offsets, offsets)
    assert np.nanmax(np.linalg.norm(r.model_keypoints - clean, axis=2)) < 0.0005 * 3
    assert r.mean_error < 0.0005
    dh = np.angle(np.exp(1j * (heading_of(r.qpos) - heading_of(qpos))))
    assert np.degrees(np.abs(dh)).max() < 2.0


def test_floor_and_up_direction(rat):
    """A standing animal walking and turning, seen by a rig tilted 25 degrees and shifted."""
    qpos, offsets, clean = synthetic_clip(rat, 100, seed=4, amplitude=0.0)
    rng = np.random.default_rng(4)
    noisy = clean + rng.normal(0, NOISE, clean.shape)
    a = np.radians(25)
    tilt = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rig = noisy @ tilt.T + np.array([0.3, -0.2, 0.5])
    r = run_stac(rig, rat, StacConfig(n_workers=1, n_calibration_frames=40, n_calibration_rounds=2), offsets=offsets)
    assert r.floor_estimated
    assert np.degrees(np.arccos(r.up_direction @ tilt[:, 2])) < 0.5
    rot = r.world_from_input[:3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    # The model's lowest point at qpos0 is this far below its standing height: the fitted root
    # must stand that high above the estimated floor (z = 0), within 3 mm.
    kp0 = model_keypoint_positions(rat, rat.model.qpos0)
    lowest = kp0[:, 2].min() - model_floor_clearance(rat.model, kp0[:, 2])
    expected_root_z = rat.model.qpos0[2] - lowest
    assert abs(np.median(r.qpos[:, 2]) - expected_root_z) < 0.003
    assert r.mean_error < NOISE_DISTANCE


def test_real_clip(rat):
    """The real DANNCE clip (mm, z-up rig): measured 1.31 mm mean and 2.45 mm 90th percentile
    error on these 300 frames without the floor term and the prior (the tail's tip then
    ~90 mm below the floor, the feet 3-9 mm in it in every frame); asserted with ~20 %
    headroom. With them (the default): no geom deeper than 1 mm in any frame, the mean error
    within 0.1 mm of the free fit's (measured: 1.37 mm, deepest geom 0.02 mm)."""
    pred = scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"]
    keypoints = pred.transpose(0, 2, 1)[:300] / 1000.0
    free = run_stac(
        keypoints,
        rat,
        StacConfig(
            n_workers=1,
            n_calibration_frames=100,
            floor_weight=0,
            contact_weight=0,
            floor_percentile=None,
            unobserved_prior=False,
        ),
    )
    assert free.max_penetration[0] > 0.05 and free.frames_penetrating.all()
    assert free.mean_error < 0.0016
    r = run_stac(keypoints, rat, StacConfig(n_workers=1, n_calibration_frames=100))
    assert r.max_penetration[0] <= 0.001 and not r.frames_penetrating.any()
    assert r.mean_error < free.mean_error + 0.0001
    # Self-contacts (head and forelimbs against the resting jaw): 2.6 mm deep at most and over
    # 1 mm in 91 frames without the contact term; with it 0.36 mm at most.
    assert (free.self_penetration > 0.001).sum() > 30
    assert r.self_penetration.max() < 0.001
    np.testing.assert_allclose(self_contact_depth(rat.model, r.qpos), r.self_penetration)
    assert r.floor_shift < -0.002  # the model's feet are thicker than the paw keypoints say
    # ... and after the shift they stand on the floor: the lowest geom touches it (within 1 mm)
    # in most frames, instead of hovering or sinking.
    assert abs(np.median(lowest_geom(rat, r.qpos))) < 0.001
    assert r.valid.all()
    assert r.mean_error < 0.0016
    assert np.nanpercentile(r.errors, 90) < 0.003
    # The rig's z is up and its floor near z = 0: the estimate agrees within 5 degrees, and
    # the rig's floor under the animal lands within 1 cm of the model's floor.
    assert np.degrees(np.arccos(r.up_direction[2])) < 5.0
    under = np.append(np.nanmean(keypoints[..., :2], axis=(0, 1)), 0.0)
    assert abs((r.world_from_input[:3, :3] @ under + r.world_from_input[:3, 3])[2]) < 0.01
    # A standing rat's lowest keypoint (a paw) is near the floor of the model world.
    assert 0.0 < np.median(np.nanmin(r.model_keypoints[..., 2], axis=1)) < 0.01


def test_chunk_seams_do_not_show(rat):
    qpos, offsets, clean = synthetic_clip(rat, 100, seed=5)
    noisy = clean + np.random.default_rng(5).normal(0, NOISE, clean.shape)
    cfg = dict(n_workers=1, **WORLD)
    whole = run_stac(noisy, rat, StacConfig(**cfg, chunk_frames=1000), offsets=offsets)
    chunked = run_stac(noisy, rat, StacConfig(**cfg, chunk_frames=25, chunk_overlap=15), offsets=offsets)
    gap = np.linalg.norm(whole.model_keypoints - chunked.model_keypoints, axis=2)
    assert gap.max() < 0.001  # 1 mm anywhere, seams (frames 25, 50, 75) included
    assert abs(whole.mean_error - chunked.mean_error) < 0.00005


def test_parallel_matches_in_process(rat):
    qpos, offsets, clean = synthetic_clip(rat, 60, seed=6)
    calls = []
    cfg = dict(n_calibration_frames=20, n_calibration_rounds=2, chunk_frames=15, **WORLD)
    one = run_stac(clean, rat, StacConfig(n_workers=1, **cfg))
    two = run_stac(clean, rat, StacConfig(n_workers=2, **cfg), progress=lambda *a: calls.append(a))
    assert two.n_workers == 2
    np.testing.assert_allclose(two.qpos, one.qpos, atol=1e-9)
    np.testing.assert_allclose(two.offsets, one.offsets, atol=1e-12)
    assert calls[-1] == ("pose", 60, 60)
    assert [c for c in calls if c[0] == "calibration"][-1][1] == 40
    assert all(b[1] >= a[1] for a, b in zip(calls, calls[1:]) if a[0] == b[0])
    assert {"startup", "floor", "calibration", "pose_fitting", "total"} <= set(two.timings)


def test_smoothness_weight(rat):
    qpos, offsets, clean = synthetic_clip(rat, 60, seed=8)
    noisy = clean + np.random.default_rng(8).normal(0, NOISE, clean.shape)
    base = dict(n_workers=1, **WORLD)
    rough = run_stac(noisy, rat, StacConfig(**base), offsets=offsets)
    smooth = run_stac(noisy, rat, StacConfig(**base, smoothness_weight=3e-4), offsets=offsets)

    def jitter(r):
        return np.abs(np.diff(r.qpos[:, 7:], axis=0)).mean()

    assert jitter(smooth) < 0.8 * jitter(rough)
    assert smooth.mean_error < 1.1 * NOISE_DISTANCE  # smoothing gives up a little fit


def test_bad_inputs(rat):
    qpos, offsets, clean = synthetic_clip(rat, 10, seed=9)
    with pytest.raises(ValueError, match="millimetres"):
        run_stac(clean * 1000, rat, StacConfig(n_workers=1))
    with pytest.raises(ValueError, match="all values are NaN"):
        run_stac(np.full_like(clean, np.nan), rat)
    with pytest.raises(ValueError, match=r"expected shape \(frames, keypoints, 3\)"):
        run_stac(clean[:, :, :2], rat)
    with pytest.raises(ValueError, match="22 keypoints, the body model has 23"):
        run_stac(clean[:, :22], rat)
    with pytest.raises(ValueError, match="infinite"):
        run_stac(np.where(np.arange(23)[None, :, None] == 0, np.inf, clean), rat)
    sparse = clean.copy()
    sparse[:, 3:] = np.nan
    with pytest.raises(ValueError, match="min_keypoints=6"):
        run_stac(sparse, rat)
    names = list(rat.keypoint_names)
    with pytest.raises(ValueError, match="keypoint 'Tail' has no site"):
        run_stac(clean, rat, keypoint_names=names[:-1] + ["Tail"])
    with pytest.raises(ValueError, match="offsets"):
        run_stac(clean, rat, offsets=offsets[:5])
    with pytest.raises(ValueError, match="StacConfig.min_keypoints"):
        StacConfig(min_keypoints=2)
    with pytest.raises(ValueError, match="StacConfig.up_direction"):
        StacConfig(up_direction=(0, 0, 0))


def test_keypoint_names_reorder(rat):
    qpos, offsets, clean = synthetic_clip(rat, 5, seed=10)
    order = np.random.default_rng(0).permutation(23)
    names = [rat.keypoint_names[i] for i in order]
    r = run_stac(clean[:, order], rat, StacConfig(n_workers=1, **WORLD), offsets=offsets, keypoint_names=names)
    assert r.keypoint_names == rat.keypoint_names
    np.testing.assert_allclose(r.keypoints, clean)


def test_offsets_match_mujoco_sites(rat):
    """The solver's offsets (body frame, no model edits) place keypoints exactly where MuJoCo
    puts sites moved with set_site_offsets."""
    qpos, offsets, clean = synthetic_clip(rat, 3, seed=11)
    model = mujoco.MjModel.from_xml_string(rat.xml)
    set_site_offsets(model, rat.keypoint_site_ids, offsets)
    data = mujoco.MjData(model)
    for t in range(3):
        data.qpos[:] = qpos[t]
        mujoco.mj_kinematics(model, data)
        np.testing.assert_allclose(data.site_xpos[rat.keypoint_site_ids], clean[t], atol=1e-12)


def test_jacobian_matches_finite_differences(rat):
    qpos, offsets, _ = synthetic_clip(rat, 1, seed=12)
    k = len(rat.keypoint_names)
    fitter = PoseFitter(rat.model, rat.keypoint_body_ids, offsets, np.ones(k, bool), SolverSettings())
    observed = np.arange(k)
    rows = [fitter._jac_buffer[3 * i : 3 * i + 3] for i in range(k)]
    p = fitter.positions(qpos[0])
    jac = fitter._jacobian(p, observed, rows).copy()
    numeric = np.empty_like(jac)
    for i, dof in enumerate(fitter.dofs):
        dq = np.zeros(rat.model.nv)
        dq[dof] = 1e-7
        q = qpos[0].copy()
        mujoco.mj_integratePos(rat.model, q, dq, 1.0)
        numeric[:, i] = (fitter.positions(q) - p).ravel() / 1e-7
    np.testing.assert_allclose(jac, numeric, atol=1e-5)
    assert fitter.n_dofs == 44  # 6 root + 38 hinges move a keypoint (not tail, toes, fingers, jaw)


# --------------------------------------------------------------------------------------------
# Physically valid registration: the floor term and the prior for unobserved joints
# --------------------------------------------------------------------------------------------


def lowest_fitted_geom(bm, offsets, qpos):
    """(T,) height (m) of the lowest geom among those the floor term covers (moved by fitted
    joints only)."""
    k = len(bm.keypoint_names)
    fitter = PoseFitter(bm.model, bm.keypoint_body_ids, offsets, np.ones(k, bool), SolverSettings())
    out = []
    for q in qpos:
        fitter.positions(q)
        out.append(fitter.floor_support.heights(fitter.data).min())
    return np.array(out)


@pytest.fixture(scope="module")
def on_floor(rat):
    """A clip standing on the floor, noisy keypoints, fitted with and without the floor term
    and the prior, as they are and sunk 2 mm (the keypoints then pull the feet into the floor:
    the floor term must hold them up)."""
    qpos, offsets, clean = synthetic_clip(rat, 40, seed=13)
    noisy = clean + np.random.default_rng(13).normal(0, NOISE, clean.shape)
    free = StacConfig(n_workers=1, floor_weight=0, unobserved_prior=False, **WORLD)
    out = dict(qpos=qpos, offsets=offsets, clean=clean)
    for label, y in (("level", noisy), ("sunk", noisy - [0.0, 0.0, 0.002])):
        out[label] = dict(
            free=run_stac(y, rat, free, offsets=offsets),
            floor=run_stac(y, rat, StacConfig(n_workers=1, **WORLD), offsets=offsets),
            keypoints=y,
        )
    return out


def test_floor_term_holds_geoms_up(on_floor, rat):
    sunk, offsets = on_floor["sunk"], on_floor["offsets"]
    free, floor = sunk["free"], sunk["floor"]
    # Without the term the fitted feet sink with the keypoints (2 mm, plus noise) ...
    assert lowest_fitted_geom(rat, offsets, free.qpos).min() < -0.002
    # ... with it no geom of any body is deeper than a fraction of a millimetre, in any frame,
    assert floor.penetration.shape == (40, len(floor.penetration_bodies))
    assert np.all(floor.penetration >= 0)
    assert floor.max_penetration[0] < 0.0005 and not floor.frames_penetrating.any()
    # at a small cost in keypoint error (the legs absorb most of the 2 mm).
    assert floor.mean_error < free.mean_error + 0.0002
    # The result's penetration is the geometry of its poses.
    np.testing.assert_allclose(body_penetration(rat.model, floor.qpos)[1], floor.penetration)


def test_floor_term_keeps_ground_truth(on_floor, rat):
    """On keypoints of a model that stands on the floor, the floor term changes the fit by
    less than the noise does: error to the true keypoints within 0.05 mm of the free fit."""
    level, clean = on_floor["level"], on_floor["clean"]
    to_truth = {k: np.linalg.norm(level[k].model_keypoints - clean, axis=2).mean() for k in ("free", "floor")}
    assert to_truth["floor"] < to_truth["free"] + 0.00005 < 0.0015
    assert level["floor"].max_penetration[0] < 0.0005
    # The tail of the ground truth hangs through the floor at rest; the free fit keeps it there,
    # the prior lifts it clear in every frame.
    tail = [i for i, n in enumerate(level["free"].penetration_bodies) if n.startswith("vertebra_C")]
    assert level["free"].penetration[:, tail].max() > 0.03
    assert level["floor"].penetration[:, tail].max() < 0.0001


def test_unobserved_groups_of_the_rodent(rat, on_floor):
    r = on_floor["level"]["floor"]
    assert r.fitted_dofs.sum() == 44
    assert set(r.unobserved_groups) == {"vertebra_C1", "toe_L", "toe_R", "jaw", "finger_L", "finger_R"}
    prior = UnobservedPrior(rat.model, r.fitted_dofs)
    tail = prior.groups[[g.name for g in prior.groups].index("vertebra_C1")]
    assert len(tail.qadr) == 24  # the tail's hinges, bent through its two tendons
    assert {label for label, _ in tail.candidates} == {
        "+caudal_extend",
        "-caudal_extend",
        "+caudal_bend",
        "-caudal_bend",
    }
    # The tail is lifted by extending it, one direction for the whole clip.
    assert r.unobserved_directions[r.unobserved_groups.index("vertebra_C1")] in ("+caudal_extend", "-caudal_extend")


def test_unobserved_prior_smallest_smooth_clearing_bend(rat, on_floor):
    """On the true poses: every group clears the floor in every frame, with at least the
    smallest bend that does (and 1.5 tolerances less fails), smoother in time than the
    per-frame bends, joints inside their limits, keypoints untouched."""
    qpos, offsets = on_floor["qpos"], on_floor["offsets"]
    fitted = on_floor["level"]["floor"].fitted_dofs
    prior = UnobservedPrior(rat.model, fitted, smoothing_frames=3.0)
    fit = prior.fit(qpos)
    assert fit.cleared.all()
    bodies, depth = body_penetration(rat.model, fit.qpos, np.concatenate([g.geoms for g in prior.groups]))
    assert depth.max() == 0.0
    i = fit.group_names.index("vertebra_C1")
    group = prior.groups[i]
    direction = group.candidates[[lbl for lbl, _ in group.candidates].index(fit.directions[i])][1]
    need = np.array([prior.required_bend(i, q, direction)[0] for q in qpos])
    assert (need > 0.01).mean() > 0.5  # the tail needs lifting in most frames
    assert np.all(fit.bends[:, i] >= need - 1e-3)
    for t in np.flatnonzero(need > 0.01)[::5]:  # smallest: a little less leaves it in the floor
        assert prior._clearance(i, qpos[t], direction, need[t] - 1.5e-3) < 0.0
    assert np.abs(np.diff(fit.bends[:, i], 2)).mean() < np.abs(np.diff(need, 2)).mean()
    adr = group.qadr
    assert np.all(fit.qpos[:, adr] >= group.lower - 1e-12) and np.all(fit.qpos[:, adr] <= group.upper + 1e-12)
    others = np.setdiff1d(np.arange(rat.nq), np.concatenate([g.qadr for g in prior.groups]))
    np.testing.assert_array_equal(fit.qpos[:, others], qpos[:, others])
    np.testing.assert_allclose(
        model_keypoint_positions(rat, fit.qpos, offsets), model_keypoint_positions(rat, qpos, offsets), atol=1e-12
    )


def test_geom_support_is_the_lowest_surface_point():
    """Each primitive's height equals the lowest of many points on its surface; a mesh's is
    below all of its vertices."""
    xml = """<mujoco><asset><mesh name="tet" vertex="0 0 0  0.02 0 0  0 0.03 0  0 0 0.01"/></asset>
    <worldbody><geom name="floor" type="plane" size="1 1 .1"/>
      <body pos="0 0 0.3" euler="20 35 50"><freejoint/>
        <geom type="sphere" size="0.02" pos="0.01 0 0"/>
        <geom type="capsule" size="0.01 0.03" euler="10 60 0"/>
        <geom type="cylinder" size="0.015 0.02" euler="40 20 0" pos="0 0.1 0"/>
        <geom type="ellipsoid" size="0.03 0.01 0.02" euler="0 45 30" pos="0.1 0 0"/>
        <geom type="box" size="0.01 0.02 0.03" euler="15 25 35" pos="-0.1 0 0"/>
        <geom type="mesh" mesh="tet" pos="0 -0.1 0"/>
        <geom type="sphere" size="0.01" contype="0" conaffinity="0"/>
      </body></worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    geoms = floor_contact_geoms(model)
    assert list(geoms) == [1, 2, 3, 4, 5, 6]  # no plane, no geom that collides with nothing
    heights = GeomSupport(model, geoms).heights(data)
    np.testing.assert_allclose(GeomSupport(model, geoms).lowest_points(data)[:, 2], heights, atol=1e-15)
    # Dense surface samples in each geom's frame: the sphere/ellipsoid map of a grid of unit
    # vectors, a capsule's and a cylinder's as a union/product, a box's faces.
    u = np.random.default_rng(0).normal(size=(200000, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    for g, h in zip(geoms[:5], heights[:5]):
        size, kind = model.geom_size[g], model.geom_type[g]
        if kind == mujoco.mjtGeom.mjGEOM_SPHERE:
            local = size[0] * u
        elif kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
            local = size[0] * u + np.sign(u[:, 2:3]) * [0, 0, size[1]]
        elif kind == mujoco.mjtGeom.mjGEOM_CYLINDER:
            rim = u[:, :2] / np.linalg.norm(u[:, :2], axis=1, keepdims=True) * size[0]
            local = np.column_stack([rim, np.sign(u[:, 2]) * size[1]])
        elif kind == mujoco.mjtGeom.mjGEOM_ELLIPSOID:
            local = size * u
        else:
            local = np.clip(u / np.abs(u).max(1, keepdims=True), -1, 1) * size
        world = data.geom_xpos[g] + local @ data.geom_xmat[g].reshape(3, 3).T
        assert world[:, 2].min() == pytest.approx(h, abs=2e-4)
        assert world[:, 2].min() >= h - 1e-12
    verts = model.mesh_vert[: model.mesh_vertnum[0]]
    mesh = geoms[5]
    world = data.geom_xpos[mesh] + verts @ data.geom_xmat[mesh].reshape(3, 3).T
    assert heights[5] <= world[:, 2].min() + 1e-12


def test_keypoints_missing_too_often_are_excluded(rat):
    """A keypoint missing in every frame and one missing in 70 % of them: each named in a
    warning, left out of calibration (initial offset kept) and of mean_error; the others are
    still recovered."""
    qpos, offsets, clean = synthetic_clip(rat, 60, seed=14)
    noisy = clean + np.random.default_rng(14).normal(0, NOISE, clean.shape)
    names = list(rat.keypoint_names)
    gone, rare = names.index("ElbowL"), names.index("KneeR")
    noisy[:, gone] = np.nan
    noisy[np.arange(60) % 10 < 7, rare] = np.nan  # 70 % of the frames
    with pytest.warns(MissingKeypointWarning) as caught:
        r = run_stac(noisy, rat, StacConfig(**QUICK, **WORLD))
    messages = [str(w.message) for w in caught]
    assert any("'ElbowL' is missing in every frame" in m for m in messages)
    assert any("'KneeR' is missing in 70% of the frames" in m for m in messages)
    assert len(messages) == 2
    expected = np.zeros(23, bool)
    expected[[gone, rare]] = True
    np.testing.assert_array_equal(r.keypoint_excluded, expected)
    np.testing.assert_array_equal(r.offsets[[gone, rare]], r.initial_offsets[[gone, rare]])
    assert np.isnan(r.errors[:, gone]).all() and np.isfinite(r.errors[:, rare]).any()
    kept = np.delete(r.errors, [gone, rare], axis=1)
    assert r.mean_error == pytest.approx(np.nanmean(kept))
    assert 0.5 * NOISE_DISTANCE < r.mean_error < NOISE_DISTANCE
    others = np.delete(np.arange(23), [gone, rare])
    assert np.linalg.norm(r.model_keypoints[:, others] - clean[:, others], axis=2).mean() < 0.0015
    # A share under the limit is kept (only the keypoint missing everywhere is excluded).
    with pytest.warns(MissingKeypointWarning) as caught:
        r2 = run_stac(noisy, rat, StacConfig(**QUICK, **WORLD, max_missing_share=0.8), offsets=offsets)
    assert len(caught) == 1 and "'ElbowL'" in str(caught[0].message)
    assert r2.keypoint_excluded.sum() == 1 and r2.keypoint_excluded[gone]


def test_floor_and_contact_jacobians_match_finite_differences(rat):
    """The floor and self-contact rows of the solver's Jacobian are the derivatives of the
    residuals they stand for (same geoms, same contact pairs)."""
    qpos, offsets, _ = synthetic_clip(rat, 20, seed=15)
    k = len(rat.keypoint_names)
    settings = SolverSettings(floor_weight=4.0, contact_weight=9.0)
    fitter = PoseFitter(rat.model, rat.keypoint_body_ids, offsets, np.ones(k, bool), settings)
    # A frame of the random truth with self-contacts, sunk 3 mm into the floor.
    t = next(t for t in range(20) if fitter.self_contacts(qpos[t])[1] is not None)
    q0 = qpos[t].copy()
    q0[2] -= lowest_fitted_geom(rat, offsets, [q0])[0] + 0.003
    observed = np.arange(k)
    rows = [fitter._jac_buffer[3 * i : 3 * i + 3] for i in range(k)]

    def residuals(q, below, pairs):
        fitter.positions(q)
        floor = fitter.floor_support.heights(fitter.data)[below]
        fitter.self_contacts(q)
        geoms = [tuple(g) for g in fitter._contact_data.contact.geom[: fitter._contact_data.ncon]]
        dist = fitter._contact_data.contact.dist[: fitter._contact_data.ncon]
        return np.concatenate([2.0 * floor, 3.0 * np.array([dist[geoms.index(pair)] for pair in pairs])])

    p = fitter.positions(q0)
    _, _, active = fitter._objective(q0, p, p, observed, None)
    below, contacts = active
    assert len(below) > 0 and contacts is not None
    fitter.positions(q0)
    cd = fitter._contact_data
    pairs = [tuple(g) for g in cd.contact.geom[: cd.ncon][cd.contact.dist[: cd.ncon] < 0]]
    fitter.positions(q0)
    jac = fitter._jacobian(p, observed, rows, active)[3 * k :]
    base = residuals(q0, below, pairs)
    numeric = np.empty((len(base), fitter.n_dofs))
    for i, dof in enumerate(fitter.dofs):
        dq = np.zeros(rat.nv)
        dq[dof] = 1e-7
        q = q0.copy()
        mujoco.mj_integratePos(rat.model, q, dq, 1.0)
        numeric[:, i] = (residuals(q, below, pairs) - base) / 1e-7
    np.testing.assert_allclose(jac, numeric, atol=2e-4 * np.abs(numeric).max())


def test_unobserved_prior_on_a_model_without_tendons():
    """Nothing rodent-specific: a box on the floor with a three-link hinge tail hanging 45
    degrees through the floor, no tendon: the tail bends with equal angles on its hinges, just
    enough to clear the floor, in the direction that lifts it."""
    links = ""
    for i in range(3):
        links += (
            f'<body name="tail{i}" pos="{0.0 if i == 0 else -0.04} 0 0">'
            f'<joint name="t{i}" type="hinge" axis="0 1 0" range="-1 1"/>'
            '<geom type="capsule" fromto="0 0 0 -0.04 0 0" size="0.003"/>'
        )
    links += "</body>" * 3
    xml = f"""<mujoco><compiler angle="radian"/><worldbody><geom name="floor" type="plane" size="1 1 .1"/>
      <body name="torso" pos="0 0 0.02"><freejoint/><geom type="box" size="0.04 0.02 0.02"/>
        <body name="base" pos="0 0 0" euler="0 -45 0">{links}</body>
      </body></worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    fitted = np.zeros(model.nv, bool)
    fitted[:6] = True
    prior = UnobservedPrior(model, fitted, smoothing_frames=0.0)
    (group,) = prior.groups
    assert group.name == "tail0" and len(group.qadr) == 3
    assert [label for label, _ in group.candidates] == ["+equal", "-equal"]
    qpos = np.tile(model.qpos0, (4, 1))
    qpos[:, 2] = [0.02, 0.03, 0.04, 0.05]  # the higher the box, the less bend needed
    before = body_penetration(model, qpos)[1]
    assert (before.max(1) > 0.01).all()
    fit = prior.fit(qpos)
    bodies, after = body_penetration(model, fit.qpos)
    assert after.max() == 0.0 and fit.cleared.all()
    bends = fit.bends[:, 0]
    assert np.all(np.diff(bends) < 0) and np.all(bends > 0)
    angles = fit.qpos[:, group.qadr]
    np.testing.assert_allclose(angles, angles[:, :1] * np.ones(3), atol=1e-12)  # equal angles
    direction = dict(group.candidates)[fit.directions[0]]
    for t in range(4):  # smallest: 2 tolerances less bend leaves the tail in the floor
        assert prior._clearance(0, qpos[t], direction, bends[t] - 2e-3) < 0.0
    np.testing.assert_array_equal(fit.qpos[:, :7], qpos[:, :7])


def test_self_contacts_skip_pairs_that_overlap_at_rest():
    """Two limbs built overlapping (at qpos0) are left alone; a third one swung into one of
    them is a contact, 5 mm deep."""
    xml = """<mujoco><compiler angle="radian"/><worldbody><geom name="floor" type="plane" size="1 1 .1"/>
      <body name="torso" pos="0 0 0.2"><freejoint/><geom type="sphere" size="0.02"/>
        <body name="a" pos="0.05 0 0"><joint name="ja" axis="0 0 1"/><geom type="sphere" size="0.01"/></body>
        <body name="b" pos="0.065 0 0"><joint name="jb" axis="0 0 1"/><geom type="sphere" size="0.01"/></body>
        <body name="c"><joint name="jc" axis="0 0 1"/><geom type="sphere" size="0.01" pos="0 0.08 0"/></body>
      </body></worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    fitter = PoseFitter(model, [1, 2, 3, 4], np.zeros((4, 3)), np.ones(4, bool), SolverSettings(contact_weight=1.0))
    depth, found = fitter.self_contacts(model.qpos0)
    assert found is None  # a and b overlap by 5 mm at rest: built that way
    q = model.qpos0.copy()
    q[model.jnt_qposadr[model.joint("jc").id]] = -np.pi / 2  # c's sphere to x = 0.08, 15 mm from b's
    depth, found = fitter.self_contacts(q)
    assert found is not None and len(depth) == 1
    assert {model.body(int(found[2][0])).name, model.body(int(found[3][0])).name} == {"b", "c"}
    assert depth[0] == pytest.approx(-0.005, abs=1e-9)
    assert self_contact_depth(model, q)[0] == pytest.approx(0.005, abs=1e-9)
