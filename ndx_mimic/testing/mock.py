"""Mock constructors of every ndx-mimic type, for tests here and in projects that build on it.

Each ``mock_X`` returns a small, valid, internally consistent object with keyword overrides.
The mocks use a two-link toy body (a free root and two hinges, two actuators) so they need no
MuJoCo; ``mock_session`` builds a whole NWBFile with units, keypoints, a STAC registration, a
rollout, a controller, activations and analysis results. Series are longer in time than they
are wide (nwbinspector's data-orientation check).
"""

from datetime import datetime, timezone

import numpy as np
from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons
from pynwb import NWBFile, TimeSeries
from pynwb.file import Subject
from pynwb.misc import Units

from ..mimic import (
    BinnedSpikeCounts,
    BodyModel,
    ControllerNetwork,
    EncodingResults,
    JointStateSeries,
    KeypointSites,
    LatentResampling,
    LayerActivations,
    NamedColumnSeries,
    NetworkActivations,
    NetworkParameter,
    NetworkWeights,
    RdmComparisons,
    RepresentationalSimilarity,
    RolloutEpisodes,
    SimulationRollout,
    StacRegistration,
)

RATE = 50.0
NUM_FRAMES = 100

TOY_MJCF = """<mujoco model="toy">
  <option timestep="0.002"/>
  <worldbody>
    <geom name="floor" type="plane" size="1 1 0.1"/>
    <body name="torso" pos="0 0 0.05">
      <freejoint name="root"/>
      <geom name="torso" type="capsule" fromto="-0.03 0 0 0.03 0 0" size="0.01"/>
      <site name="kp_head" pos="0.03 0 0"/>
      <body name="leg" pos="0.03 0 0">
        <joint name="hip" type="hinge" axis="0 1 0" range="-1.5 1.5"/>
        <geom name="leg" type="capsule" fromto="0 0 0 0 0 -0.03" size="0.005"/>
        <site name="kp_knee" pos="0 0 -0.03"/>
        <body name="shin" pos="0 0 -0.03">
          <joint name="knee" type="hinge" axis="0 1 0" range="-2 0"/>
          <geom name="shin" type="capsule" fromto="0 0 0 0 0 -0.02" size="0.004"/>
          <site name="kp_foot" pos="0 0 -0.02"/>
        </body>
      </body>
    </body>
  </worldbody>
  <actuator>
    <general name="hip" joint="hip" dyntype="filter" dynprm="0.04" gainprm="0.5" ctrlrange="-1 1" ctrllimited="true"/>
    <general name="knee" joint="knee" dyntype="filter" dynprm="0.04" gainprm="0.3" ctrlrange="-1 1" ctrllimited="true"/>
  </actuator>
</mujoco>
"""
TOY_QPOS_NAMES = ["root_x", "root_y", "root_z", "root_qw", "root_qx", "root_qy", "root_qz", "hip", "knee"]
TOY_QPOS_UNITS = ["meters"] * 3 + ["dimensionless"] * 4 + ["radians"] * 2
TOY_QVEL_NAMES = ["root_vx", "root_vy", "root_vz", "root_wx", "root_wy", "root_wz", "hip", "knee"]
TOY_QVEL_UNITS = ["meters/second"] * 3 + ["radians/second"] * 5
TOY_ACTUATOR_NAMES = ["hip", "knee"]
TOY_KEYPOINTS = ["head", "knee", "foot"]
LAYERS = {
    "encoder_0": ("encoder", 16),
    "latent_mean": ("latent_mean", 4),
    "latent_scale": ("latent_scale", 4),
    "latent_sample": ("latent_sample", 4),
    "lstm_hidden_0": ("lstm_hidden", 8),
    "lstm_cell_0": ("lstm_cell", 8),
    "action": ("action", 2),
}


def _rng(seed):
    return np.random.default_rng(seed)


def mock_BodyModel(**kwargs):
    args = dict(
        name="BodyModel",
        mjcf=TOY_MJCF,
        model_name="toy",
        scale=1.0,
        actuator_kind="torque",
        timestep=0.002,
        mujoco_version="3.2.0",
        qpos_names=TOY_QPOS_NAMES,
        qvel_names=TOY_QVEL_NAMES,
        actuator_names=TOY_ACTUATOR_NAMES,
        body_names=["world", "torso", "leg", "shin"],
        source="ndx_mimic.testing.mock TOY_MJCF",
        software_name="ndx_mimic.testing",
        software_version="0.1.0",
    )
    args.update(kwargs)
    return BodyModel(**args)


def toy_qpos(num_frames=NUM_FRAMES, seed=0):
    """A smooth toy trajectory (T, 9): root moving forward, unit quaternion, hinges within range."""
    t = np.arange(num_frames) / RATE
    rng = _rng(seed)
    phase = rng.uniform(0, np.pi)
    yaw = 0.3 * np.sin(t + phase)
    qpos = np.zeros((num_frames, 9))
    qpos[:, 0] = 0.05 * t
    qpos[:, 2] = 0.05
    qpos[:, 3] = np.cos(yaw / 2)
    qpos[:, 6] = np.sin(yaw / 2)
    qpos[:, 7] = 0.8 * np.sin(4 * t + phase)
    qpos[:, 8] = -1.0 + 0.5 * np.cos(4 * t)
    return qpos


def mock_JointStateSeries(body_model=None, kind="qpos", num_frames=NUM_FRAMES, **kwargs):
    """A JointStateSeries of the toy body; ``kind`` 'qpos', 'qvel' or 'actuator' picks the columns."""
    body_model = body_model or mock_BodyModel()
    columns = {"qpos": (TOY_QPOS_NAMES, TOY_QPOS_UNITS), "qvel": (TOY_QVEL_NAMES, TOY_QVEL_UNITS)}
    names, units = columns.get(kind, (TOY_ACTUATOR_NAMES, ["dimensionless"] * 2))
    data = toy_qpos(num_frames) if kind == "qpos" else _rng(1).normal(size=(num_frames, len(names)))
    args = dict(
        name=kind,
        data=data,
        unit="mixed" if kind in columns else "dimensionless",
        column_names=names,
        column_units=units if kind in columns else None,
        body_model=body_model,
        rate=RATE,
        starting_time=0.0,
        description=f"toy {kind}",
    )
    args.update(kwargs)
    return JointStateSeries(**args)


def mock_Skeleton(**kwargs):
    args = dict(name="toy3", nodes=TOY_KEYPOINTS, edges=np.array([[0, 1], [1, 2]], dtype="uint8"))
    args.update(kwargs)
    return Skeleton(**args)


def mock_PoseEstimation(skeleton=None, name="PoseEstimation", positions=None, **kwargs):
    """3D keypoints (T, 3 keypoints, xyz) in meters on the toy skeleton, at 50 Hz."""
    skeleton = skeleton or mock_Skeleton()
    if positions is None:
        positions = 0.05 * _rng(2).normal(size=(NUM_FRAMES, len(TOY_KEYPOINTS), 3))
    series = [
        PoseEstimationSeries(
            name=keypoint,
            description=f"position of {keypoint}",
            data=positions[:, k],
            unit="meters",
            reference_frame="arena corner, z up",
            rate=RATE,
            starting_time=0.0,
            confidence=np.ones(len(positions)),
            confidence_definition="mock",
        )
        for k, keypoint in enumerate(skeleton.nodes)
    ]
    args = dict(
        name=name,
        pose_estimation_series=series,
        description="mock 3D keypoints",
        source_software="ndx_mimic.testing",
        skeleton=skeleton,
    )
    args.update(kwargs)
    return PoseEstimation(**args)


def mock_KeypointSites(**kwargs):
    sites = KeypointSites(name="keypoint_sites", description="toy keypoint sites")
    initial = np.array([[0.03, 0, 0], [0, 0, -0.03], [0, 0, -0.02]])
    for keypoint, body, offset, regularized, excluded in zip(
        TOY_KEYPOINTS, ["torso", "leg", "shin"], initial, [True, False, False], [False, False, True]
    ):
        sites.add_row(
            keypoint=keypoint,
            body=body,
            offset=offset + 0.001,
            initial_offset=offset,
            regularized=regularized,
            excluded=excluded,
        )
    return sites


def mock_StacRegistration(body_model=None, pose_estimation=None, skeleton=None, **kwargs):
    body_model = body_model or mock_BodyModel()
    skeleton = skeleton or (pose_estimation.skeleton if pose_estimation is not None else mock_Skeleton())
    pose_estimation = pose_estimation or mock_PoseEstimation(skeleton=skeleton)
    errors = np.abs(_rng(3).normal(0.002, 0.001, size=(NUM_FRAMES, len(TOY_KEYPOINTS))))
    num_bodies = len(body_model.body_names[:]) - 1  # the world body never penetrates
    penetration = np.maximum(0.0, _rng(4).normal(-0.001, 0.0005, size=(NUM_FRAMES, num_bodies)))
    args = dict(
        name="StacRegistration",
        qpos=mock_JointStateSeries(body_model, "qpos"),
        keypoint_errors=NamedColumnSeries(
            name="keypoint_errors",
            data=errors,
            unit="meters",
            column_names=TOY_KEYPOINTS,
            rate=RATE,
            starting_time=0.0,
            description="toy keypoint errors",
        ),
        model_keypoints=mock_PoseEstimation(skeleton=skeleton, name="model_keypoints"),
        keypoint_sites=mock_KeypointSites(),
        frame_valid=np.ones(NUM_FRAMES, dtype=bool),
        world_to_model=np.eye(4),
        pose_estimation=pose_estimation,
        body_model=body_model,
        mean_error=float(errors.mean()),
        min_keypoints=2,
        penetration=NamedColumnSeries(
            name="penetration",
            data=penetration,
            unit="meters",
            column_names=list(body_model.body_names[:][1:]),
            rate=RATE,
            starting_time=0.0,
            description="toy depth of each body below the floor",
        ),
        max_penetration=float(penetration.max()),
        self_contact_depth=TimeSeries(
            name="self_contact_depth",
            data=penetration.max(axis=1) / 2,
            unit="meters",
            rate=RATE,
            starting_time=0.0,
            description="toy depth of the deepest self-contact",
        ),
        software_name="ndx_mimic.testing",
        software_version="0.1.0",
        parameters='{"calibration_frames": 50}',
    )
    args.update(kwargs)
    return StacRegistration(**args)


def mock_RolloutEpisodes(**kwargs):
    episodes = RolloutEpisodes(name="episodes", description="toy episodes")
    episodes.add_row(
        start_time=0.0, stop_time=1.0, start_frame=0, termination_reason="tracking_error", episode_return=20.5
    )
    episodes.add_row(
        start_time=1.0, stop_time=2.0, start_frame=50, termination_reason="end_of_reference", episode_return=30.0
    )
    return episodes


def mock_SimulationRollout(body_model=None, reference=None, controller=None, mode="closed_loop", **kwargs):
    body_model = body_model or mock_BodyModel()
    args = dict(
        name=f"SimulationRollout_{mode}",
        mode=mode,
        physics_timestep=0.002,
        control_timestep=1 / RATE,
        seed=0,
        qpos=mock_JointStateSeries(body_model, "qpos"),
        qvel=mock_JointStateSeries(body_model, "qvel"),
        actuator_controls=mock_JointStateSeries(body_model, "actuator", name="actuator_controls"),
        actuator_activations=mock_JointStateSeries(body_model, "actuator", name="actuator_activations"),
        actuator_forces=mock_JointStateSeries(body_model, "actuator", name="actuator_forces", unit="newton-meters"),
        reward=_reward_series(),
        reward_terms=NamedColumnSeries(
            name="reward_terms",
            data=_rng(4).uniform(size=(NUM_FRAMES, 2)),
            unit="dimensionless",
            column_names=["root_position", "joint_angles"],
            rate=RATE,
            starting_time=0.0,
            description="toy reward terms",
        ),
        tracking_errors=NamedColumnSeries(
            name="tracking_errors",
            data=_rng(5).uniform(0.0, 0.02, size=(NUM_FRAMES, 2)),
            unit="meters",
            column_names=["total_error", "pose_error"],
            rate=RATE,
            starting_time=0.0,
            description="toy tracking errors",
        ),
        episodes=mock_RolloutEpisodes(),
        body_model=body_model,
        reference=reference,
        controller=controller,
        software_name="ndx_mimic.testing",
        software_version="0.1.0",
    )
    args.update(kwargs)
    return SimulationRollout(**args)


def _reward_series():
    from pynwb import TimeSeries

    return TimeSeries(
        name="reward",
        data=_rng(5).uniform(size=NUM_FRAMES),
        unit="dimensionless",
        rate=RATE,
        starting_time=0.0,
        description="toy reward",
    )


def mock_ControllerNetwork(with_weights=True, **kwargs):
    weights = None
    if with_weights:
        weights = NetworkWeights(
            network_parameters=[
                NetworkParameter(name="encoder.dense_0.kernel", data=_rng(6).normal(size=(12, 16)).astype("float32")),
                NetworkParameter(name="encoder.dense_0.bias", data=np.zeros(16, dtype="float32")),
            ]
        )
    args = dict(
        name="ControllerNetwork",
        architecture='{"encoder_sizes": [16], "latent_size": 4, "decoder": "lstm", "decoder_sizes": [8]}',
        decoder_kind="lstm",
        latent_size=4,
        reference_window=5,
        observation_spec='[{"name": "reference", "size": 12}]',
        training='{"method": "supervised", "steps": 10, "seed": 0}',
        checkpoint_sha256="0" * 64,
        observation_mean=np.zeros(12),
        observation_std=np.ones(12),
        weights=weights,
        software_name="ndx_mimic.testing",
        software_version="0.1.0",
    )
    args.update(kwargs)
    return ControllerNetwork(**args)


def mock_LayerActivations(name="encoder_0", layer_kind="encoder", num_units=16, dtype="float16", **kwargs):
    args = dict(
        name=name,
        data=_rng(7).normal(size=(NUM_FRAMES, num_units)).astype(dtype),
        layer_kind=layer_kind,
        rate=RATE,
        starting_time=0.0,
        description=f"toy layer {name}",
    )
    args.update(kwargs)
    return LayerActivations(**args)


def mock_NetworkActivations(controller=None, rollout=None, **kwargs):
    controller = controller or mock_ControllerNetwork()
    rollout = rollout or mock_SimulationRollout(controller=controller)
    layers = [mock_LayerActivations(name, kind, size) for name, (kind, size) in LAYERS.items()]
    resampling = LatentResampling(
        name="latent_resampling",
        num_samples=50,
        seed=0,
        action_std=NamedColumnSeries(
            name="action_std",
            data=np.abs(_rng(8).normal(size=(NUM_FRAMES, 2))),
            unit="dimensionless",
            column_names=TOY_ACTUATOR_NAMES,
            rate=RATE,
            starting_time=0.0,
            description="toy action std",
        ),
        latent_std=NamedColumnSeries(
            name="latent_std",
            data=np.abs(_rng(9).normal(size=(NUM_FRAMES, 4))),
            unit="dimensionless",
            column_names=[f"latent_{i}" for i in range(4)],
            rate=RATE,
            starting_time=0.0,
            description="toy latent std",
        ),
    )
    args = dict(
        name="NetworkActivations_closed_loop",
        layer_activations=layers,
        latent_resampling=resampling,
        controller=controller,
        rollout=rollout,
        software_name="ndx_mimic.testing",
        software_version="0.1.0",
    )
    args.update(kwargs)
    return NetworkActivations(**args)


def mock_BinnedSpikeCounts(num_bins=200, num_units=5, **kwargs):
    args = dict(
        name="BinnedSpikeCounts",
        data=_rng(10).poisson(0.5, size=(num_bins, num_units)).astype("uint16"),
        column_names=[f"unit_{i}" for i in range(num_units)],
        bin_size=0.02,
        rate=50.0,
        starting_time=0.0,
        brain_region=["DLS"] * num_units,
        active=np.ones(num_units, dtype=bool),
        description="toy binned spike counts",
    )
    args.update(kwargs)
    return BinnedSpikeCounts(**args)


def mock_EncodingResults(units_table=None, num_units=3, **kwargs):
    """Encoding results over ``units_table`` rows (or, without a table, over count columns)."""
    args = dict(
        name="EncodingResults",
        description="toy encoding results",
        bin_size=0.02,
        num_folds=5,
        chunk_duration=4.0,
        model="poisson_glm",
        regularization="l2",
        alpha=1.0,
        pca_variance=0.9,
        software_name="ndx_mimic.testing",
        software_version="0.1.0",
    )
    if units_table is not None:
        args["target_tables"] = {"unit": units_table}
    args.update(kwargs)
    results = EncodingResults(**args)
    rng = _rng(11)
    for unit in range(num_units):
        for feature_set in ("joint_angles", "kinematics"):
            for lag in (-0.1, 0.0):
                row = dict(
                    brain_region="DLS",
                    feature_set=feature_set,
                    lag=lag,
                    cv_llr=float(rng.uniform(0, 0.2)),
                    pseudo_r2=float(rng.uniform(0, 0.1)),
                    p_value=0.01,
                    q_value=0.02,
                    significant=True,
                    converged=lag == 0.0,
                )
                row["unit" if units_table is not None else "count_column"] = unit
                results.add_row(**row)
    return results


def mock_RepresentationalSimilarity(**kwargs):
    labels = ["Walk", "Rear", "FaceGroom", "Idle"]
    rng = _rng(12)
    rdms = []
    for _ in range(3):
        a = rng.uniform(size=(4, 4))
        rdm = a + a.T
        np.fill_diagonal(rdm, 0)
        rdms.append(rdm)
    comparisons = RdmComparisons(name="comparisons", description="toy comparisons")
    for candidate, similarity in [("joint_angles", 0.4), ("encoder_0", 0.6)]:
        comparisons.add_row(
            reference_rdm="neural_DLS",
            candidate_rdm=candidate,
            method="whitened_unbiased_cosine",
            similarity=similarity,
            p_value=0.05,
        )
    args = dict(
        name="RepresentationalSimilarity",
        rdms=np.stack(rdms),
        rdm_names=["neural_DLS", "joint_angles", "encoder_0"],
        dissimilarity_measures=["crossnobis", "correlation", "correlation"],
        condition_labels=labels,
        comparisons=comparisons,
        software_name="ndx_mimic.testing",
        software_version="0.1.0",
    )
    args.update(kwargs)
    return RepresentationalSimilarity(**args)


def mock_session(session_id="mock", with_counts=False):
    """A whole session file: subject, units, keypoints, STAC, rollout, controller, activations, analyses."""
    nwbfile = NWBFile(
        session_description="mock MIMIC session (toy body, random data)",
        identifier=f"ndx-mimic-{session_id}",
        session_start_time=datetime(2024, 1, 1, 12, tzinfo=timezone.utc),
        session_id=session_id,
        experimenter=["Doe, Jane"],
        experiment_description="Mock session of the MIMIC virtual-rodent pipeline.",
        institution="Mock University",
        keywords=["virtual rodent", "MuJoCo", "pose"],
        subject=Subject(
            subject_id="rat01",
            species="Rattus norvegicus",
            sex="M",
            age="P90D",
            description="mock subject",
        ),
    )
    nwbfile.units = Units(name="units", description="mock units", resolution=1 / 30000)
    device = nwbfile.create_device(name="tetrode_drive", description="16-tetrode drive")
    group = nwbfile.create_electrode_group(name="tetrode_0", description="tetrode", location="DLS", device=device)
    for _ in range(4):
        nwbfile.add_electrode(group=group, location="DLS")
    nwbfile.add_unit_column(name="brain_region", description="Brain region of the unit ('DLS' or 'MC').")
    nwbfile.add_unit_column(name="cell_type", description="Putative cell type.")
    nwbfile.add_unit_column(name="quality", description="Sorting quality ('good', 'mua').")
    rng = _rng(13)
    for _ in range(3):
        spikes = np.sort(rng.uniform(0, NUM_FRAMES / RATE, size=20))
        nwbfile.add_unit(spike_times=spikes, electrode_group=group, brain_region="DLS", cell_type="SPN", quality="good")
    labels = nwbfile.create_time_intervals(name="behavior_labels", description="behaviour bouts")
    labels.add_column(name="label", description="Behaviour label.")
    labels.add_column(name="cluster_id", description="Behaviour cluster id.")
    labels.add_row(start_time=0.0, stop_time=1.0, label="Walk", cluster_id=3)
    labels.add_row(start_time=1.0, stop_time=2.0, label="Rear", cluster_id=7)

    behavior = nwbfile.create_processing_module("behavior", "3D keypoints")
    skeleton = mock_Skeleton(subject=nwbfile.subject)
    behavior.add(Skeletons(skeletons=[skeleton]))
    pose = mock_PoseEstimation(skeleton=skeleton)
    behavior.add(pose)

    mimic = nwbfile.create_processing_module("mimic", "MIMIC pipeline results")
    body_model = mock_BodyModel()
    stac = mock_StacRegistration(body_model=body_model, pose_estimation=pose)
    controller = mock_ControllerNetwork()
    rollout = mock_SimulationRollout(body_model=body_model, reference=stac, controller=controller)
    activations = mock_NetworkActivations(controller=controller, rollout=rollout)
    for obj in (body_model, stac, controller, rollout, activations):
        mimic.add(obj)
    if with_counts:
        counts = mock_BinnedSpikeCounts()
        mimic.add(counts)
        mimic.add(mock_EncodingResults(spike_counts=counts))
    else:
        mimic.add(mock_EncodingResults(units_table=nwbfile.units))
    mimic.add(mock_RepresentationalSimilarity())
    return nwbfile
