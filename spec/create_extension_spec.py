"""Generate the ndx-mimic namespace and extension YAML in this folder.

Run ``python spec/create_extension_spec.py`` after changing a type; the YAML is committed and a
test checks that it equals what this script writes.
"""

from pathlib import Path

from pynwb.spec import (
    NWBAttributeSpec,
    NWBDatasetSpec,
    NWBGroupSpec,
    NWBLinkSpec,
    NWBNamespaceBuilder,
    export_spec,
)

NAMESPACE = "ndx-mimic"
VERSION = "0.2.0"


def text_attribute(name, doc, required=True):
    return NWBAttributeSpec(name=name, dtype="text", doc=doc, required=required)


def names_dataset(name, dim, doc, quantity=1):
    """A 1-D text dataset of names (joint, actuator, keypoint, layer, ...)."""
    return NWBDatasetSpec(name=name, dtype="text", dims=[dim], shape=[None], doc=doc, quantity=quantity)


def provenance_attributes():
    """Attributes every appended result carries: what computed it and with which parameters."""
    return [
        text_attribute(
            "software_name", "Name of the software that computed this result, e.g. 'mimic_nwb'.", required=False
        ),
        text_attribute("software_version", "Version of that software.", required=False),
        text_attribute(
            "parameters",
            "Every parameter of the computation as one JSON object (for exact reproduction). The parameters "
            "that readers filter on are also declared as typed attributes of the type.",
            required=False,
        ),
        text_attribute("created", "When the result was computed (ISO 8601 date-time with time zone).", required=False),
    ]


def build_types():
    # ---------------------------------------------------------------------------------------------
    # Series with named columns
    named_column_series = NWBGroupSpec(
        neurodata_type_def="NamedColumnSeries",
        neurodata_type_inc="TimeSeries",
        doc=(
            "A TimeSeries of T x N values whose columns carry names and, when they differ, units. "
            "The TimeSeries 'unit' attribute holds the unit shared by all columns, or the text 'mixed' "
            "when columns differ; then 'column_units' gives the SI unit of every column."
        ),
        datasets=[
            NWBDatasetSpec(
                name="data",
                dtype="numeric",
                dims=["num_times", "num_columns"],
                shape=[None, None],
                doc="Values, one row per time point and one column per named quantity.",
                attributes=[
                    NWBAttributeSpec(
                        name="unit",
                        dtype="text",
                        doc=("SI unit shared by all columns, or 'mixed' when the columns differ (see column_units)."),
                    )
                ],
            ),
            names_dataset("column_names", "num_columns", "Name of every column of data, in column order."),
            names_dataset(
                "column_units",
                "num_columns",
                "SI unit of every column of data (e.g. 'meters', 'radians', 'dimensionless', 'newton-meters'). "
                "Required when the 'unit' of data is 'mixed'.",
                quantity="?",
            ),
        ],
    )

    body_model = NWBGroupSpec(
        neurodata_type_def="BodyModel",
        neurodata_type_inc="NWBDataInterface",
        default_name="BodyModel",
        doc=(
            "The MuJoCo body model a pipeline stage used: the complete MJCF of the compiled (scaled) model, "
            "with every asset it references, so that the model compiles from this file alone."
        ),
        attributes=[
            text_attribute("model_name", "Name of the model, e.g. 'rodent'."),
            NWBAttributeSpec(
                name="scale", dtype="float64", doc="Scale factor applied to the source model (1.0: unscaled)."
            ),
            text_attribute(
                "actuator_kind",
                "Kind of actuators: 'torque' (gain = force range, no bias), 'position' (servos), or "
                "'as_declared' (the source MJCF's own actuators, unchanged).",
            ),
            NWBAttributeSpec(name="timestep", dtype="float64", doc="Physics timestep of the model, in seconds."),
            text_attribute("mjcf_sha256", "SHA-256 hex digest of the UTF-8 bytes of the 'mjcf' dataset."),
            text_attribute("mujoco_version", "Version of MuJoCo that compiled the model."),
            text_attribute("source", "Where the source model came from, e.g. 'dm_control rodent.xml'.", required=False),
            *provenance_attributes(),
        ],
        datasets=[
            NWBDatasetSpec(name="mjcf", dtype="text", doc="Full MJCF (XML) text of the model as used."),
            names_dataset("qpos_names", "nq", "Name of every generalised position coordinate (qpos column)."),
            names_dataset("qvel_names", "nv", "Name of every degree of freedom (qvel column)."),
            names_dataset("actuator_names", "nu", "Name of every actuator (control column)."),
            names_dataset("body_names", "nbody", "Name of every body, in MuJoCo body order."),
            NWBDatasetSpec(
                neurodata_type_def="ModelAsset",
                doc=(
                    "A file the MJCF references (mesh, skin, texture), stored byte for byte. The dataset "
                    "name is the file name used in the MJCF."
                ),
                dtype="uint8",
                dims=["num_bytes"],
                shape=[None],
                quantity="*",
            ),
        ],
    )

    joint_state_series = NWBGroupSpec(
        neurodata_type_def="JointStateSeries",
        neurodata_type_inc="NamedColumnSeries",
        doc=(
            "A joint-space quantity of a body model over time: qpos, qvel, qacc, generalised or residual "
            "forces (one column per degree of freedom), actuator controls, activation states ('act') or "
            "forces (one column per actuator). Columns are named as in the linked body model."
        ),
        links=[NWBLinkSpec(name="body_model", target_type="BodyModel", doc="The body model these columns belong to.")],
    )

    keypoint_sites = NWBGroupSpec(
        neurodata_type_def="KeypointSites",
        neurodata_type_inc="DynamicTable",
        default_name="keypoint_sites",
        doc="Where each keypoint sits on the body model: one row per keypoint, in the Skeleton's node order.",
        datasets=[
            NWBDatasetSpec(name="keypoint", neurodata_type_inc="VectorData", dtype="text", doc="Keypoint name."),
            NWBDatasetSpec(
                name="body", neurodata_type_inc="VectorData", dtype="text", doc="Name of the body the site is on."
            ),
            NWBDatasetSpec(
                name="offset",
                neurodata_type_inc="VectorData",
                dtype="float64",
                dims=["num_keypoints", "x, y, z"],
                shape=[None, 3],
                doc="Fitted site offset in the body frame, in meters.",
            ),
            NWBDatasetSpec(
                name="initial_offset",
                neurodata_type_inc="VectorData",
                dtype="float64",
                dims=["num_keypoints", "x, y, z"],
                shape=[None, 3],
                doc="Offset before fitting (from the site map, scaled), in the body frame, in meters.",
            ),
            NWBDatasetSpec(
                name="regularized",
                neurodata_type_inc="VectorData",
                dtype="bool",
                doc="Whether the offset fit pulled this keypoint toward its initial offset.",
            ),
            NWBDatasetSpec(
                name="excluded",
                neurodata_type_inc="VectorData",
                dtype="bool",
                doc=(
                    "Whether the keypoint was missing in too many frames (every frame, or more than the share "
                    "given in the registration's parameters) and so was left out of the offset calibration "
                    "(its offset is the initial one) and of the error statistics (mean_error)."
                ),
                quantity="?",
            ),
        ],
    )

    stac_registration = NWBGroupSpec(
        neurodata_type_def="StacRegistration",
        neurodata_type_inc="NWBDataInterface",
        default_name="StacRegistration",
        doc=(
            "A body model registered to 3D keypoints (STAC): the fitted pose in every keypoint frame, the "
            "keypoint sites, the model's keypoint positions and the per-keypoint errors. Series are on the "
            "clock of the source keypoints, one row per keypoint frame."
        ),
        attributes=[
            NWBAttributeSpec(
                name="mean_error",
                dtype="float64",
                doc="Mean keypoint error over valid frames and observed keypoints, in meters.",
                required=False,
            ),
            NWBAttributeSpec(
                name="min_keypoints",
                dtype="int32",
                doc="Frames with fewer observed keypoints than this were not fitted (frame_valid false).",
                required=False,
            ),
            NWBAttributeSpec(
                name="max_penetration",
                dtype="float64",
                doc="Largest value of penetration over all frames and bodies, in meters.",
                required=False,
            ),
            *provenance_attributes(),
        ],
        groups=[
            NWBGroupSpec(
                name="qpos",
                neurodata_type_inc="JointStateSeries",
                doc=(
                    "Fitted generalised positions, T x nq, in the model frame (floor at z = 0, gravity along -z; "
                    "see world_to_model); free joint: meters and unit quaternion; hinges: radians."
                ),
            ),
            NWBGroupSpec(
                name="keypoint_errors",
                neurodata_type_inc="NamedColumnSeries",
                doc=(
                    "Distance between each observed keypoint and its model site, T x K, in meters; NaN where "
                    "the keypoint was missing or the frame invalid. Columns are keypoint names."
                ),
            ),
            NWBGroupSpec(
                name="model_keypoints",
                neurodata_type_inc="PoseEstimation",
                doc=(
                    "Positions of the model's keypoint sites, as an ndx-pose PoseEstimation on the same Skeleton "
                    "as the source keypoints (one PoseEstimationSeries per keypoint, meters, in the frame of the "
                    "source keypoints), so pose tools can overlay model and data."
                ),
            ),
            NWBGroupSpec(name="keypoint_sites", neurodata_type_inc="KeypointSites", doc="The keypoint sites."),
            NWBGroupSpec(
                name="penetration",
                neurodata_type_inc="NamedColumnSeries",
                doc=(
                    "Depth below the floor (z = 0 of the model frame) of each body's deepest geom, T x B, in "
                    "meters: 0 when all its geoms are clear, NaN for frames not fitted. Columns are body names: "
                    "the bodies that own a geom that can collide with the floor. A physically valid reference "
                    "keeps every column near 0; depth the keypoints force (the fit trades it against keypoint "
                    "error) shows here frame by frame."
                ),
                quantity="?",
            ),
            NWBGroupSpec(
                name="self_contact_depth",
                neurodata_type_inc="TimeSeries",
                doc=(
                    "Depth of the deepest contact between two of the body model's own geoms in each frame (the "
                    "pairs MuJoCo's contact filter lets collide), in meters: 0 when none touch, NaN for frames "
                    "not fitted."
                ),
                quantity="?",
            ),
        ],
        datasets=[
            NWBDatasetSpec(
                name="frame_valid",
                dtype="bool",
                dims=["num_frames"],
                shape=[None],
                doc="False for frames with too few observed keypoints: not fitted, their qpos is NaN.",
            ),
            NWBDatasetSpec(
                name="world_to_model",
                dtype="float64",
                dims=["row", "column"],
                shape=[4, 4],
                doc=(
                    "Rigid transform (homogeneous 4x4) from the keypoints' world frame to the model frame, in "
                    "which the floor is z = 0 and gravity points along -z. Identity when the frames coincide."
                ),
                quantity="?",
            ),
        ],
        links=[
            NWBLinkSpec(name="pose_estimation", target_type="PoseEstimation", doc="The source 3D keypoints."),
            NWBLinkSpec(name="body_model", target_type="BodyModel", doc="The body model that was registered."),
        ],
    )

    episodes = NWBGroupSpec(
        neurodata_type_def="RolloutEpisodes",
        neurodata_type_inc="TimeIntervals",
        default_name="episodes",
        doc=(
            "Episodes of a rollout: the simulation restarts from the reference at 'start_frame' after a "
            "termination, resetting the actuator activation state and the controller's recurrent state."
        ),
        datasets=[
            NWBDatasetSpec(
                name="start_frame",
                neurodata_type_inc="VectorData",
                dtype="int64",
                doc="Index of the reference frame the episode started from.",
            ),
            NWBDatasetSpec(
                name="termination_reason",
                neurodata_type_inc="VectorData",
                dtype="text",
                doc="Why the episode ended: 'tracking_error', 'end_of_reference', 'physics_unstable', ...",
            ),
            NWBDatasetSpec(
                name="episode_return",
                neurodata_type_inc="VectorData",
                dtype="float64",
                doc="Sum of the rewards of the episode.",
            ),
        ],
    )

    simulation_rollout = NWBGroupSpec(
        neurodata_type_def="SimulationRollout",
        neurodata_type_inc="NWBDataInterface",
        default_name="SimulationRollout",
        doc=(
            "Simulated joint states of a body model imitating a reference: closed loop (controller in "
            "physics), open loop (every step starts from the reference state), inverse dynamics (forces "
            "that reproduce the reference) or expert (a tracking controller without a network: inverse "
            "dynamics and feedback through the actuators). One row per control step, aligned to reference "
            "frames."
        ),
        attributes=[
            text_attribute("mode", "One of 'closed_loop', 'open_loop', 'inverse_dynamics', 'expert'."),
            NWBAttributeSpec(name="physics_timestep", dtype="float64", doc="Physics step, in seconds."),
            NWBAttributeSpec(name="control_timestep", dtype="float64", doc="Control step, in seconds."),
            NWBAttributeSpec(name="seed", dtype="int32", doc="Random seed of the rollout.", required=False),
            *provenance_attributes(),
        ],
        groups=[
            NWBGroupSpec(
                name=name,
                neurodata_type_inc="JointStateSeries",
                doc=doc,
                quantity="?",
            )
            for name, doc in [
                ("qpos", "Generalised positions, T x nq."),
                ("qvel", "Generalised velocities, T x nv (m/s, rad/s)."),
                ("qacc", "Generalised accelerations, T x nv (m/s^2, rad/s^2)."),
                ("actuator_controls", "Actuator controls (ctrl), T x nu, dimensionless within the control range."),
                ("actuator_activations", "Actuator activation states (MuJoCo 'act'), T x nu, dimensionless."),
                ("actuator_forces", "Actuator forces (newtons or newton-meters), T x nu."),
                ("generalized_forces", "Generalised forces that produce the motion (mj_inverse), T x nv."),
                (
                    "residual_forces",
                    "Part of the generalised forces that the actuators cannot produce (root and unactuated "
                    "directions), T x nv.",
                ),
            ]
        ]
        + [
            NWBGroupSpec(
                name="reward",
                neurodata_type_inc="TimeSeries",
                doc="Total reward per control step (dimensionless).",
                quantity="?",
            ),
            NWBGroupSpec(
                name="reward_terms",
                neurodata_type_inc="NamedColumnSeries",
                doc="Named terms of the reward per control step, T x terms (dimensionless).",
                quantity="?",
            ),
            NWBGroupSpec(
                name="tracking_errors",
                neurodata_type_inc="NamedColumnSeries",
                doc=(
                    "How well each simulated state tracks the reference at its frame, T x measures (columns "
                    "name their units): 'total_error' (mean distance of the keypoint sites to the reference's, "
                    "meters), 'pose_error' (the same after a rigid alignment without scaling, meters), "
                    "'body_error' (mean distance of the keypoint-carrying bodies, meters: what ends an "
                    "episode), and the metrics of dm_control and track-mjx. NaN where no simulated state "
                    "reached the frame (the first)."
                ),
                quantity="?",
            ),
            NWBGroupSpec(name="episodes", neurodata_type_inc="RolloutEpisodes", doc="Episodes of the rollout."),
        ],
        links=[
            NWBLinkSpec(name="body_model", target_type="BodyModel", doc="The simulated body model."),
            NWBLinkSpec(
                name="reference",
                target_type="StacRegistration",
                doc="The registration the rollout imitates.",
                quantity="?",
            ),
            NWBLinkSpec(
                name="controller",
                target_type="ControllerNetwork",
                doc="The network that produced the actuator controls (closed and open loop).",
                quantity="?",
            ),
        ],
    )

    controller_network = NWBGroupSpec(
        neurodata_type_def="ControllerNetwork",
        neurodata_type_inc="NWBDataInterface",
        default_name="ControllerNetwork",
        doc=(
            "An imitation controller network (reference encoder, variational latent, decoder): its "
            "architecture, observation specification, normalisation statistics, training metadata and "
            "optionally its weights, so that the file alone can reproduce its rollouts."
        ),
        attributes=[
            text_attribute(
                "architecture",
                "JSON object of the architecture: encoder sizes, latent size, decoder kind ('lstm' or 'mlp') "
                "and sizes, reference window, KL coefficient, activation function.",
            ),
            text_attribute("decoder_kind", "'lstm' or 'mlp'."),
            NWBAttributeSpec(name="latent_size", dtype="int32", doc="Size of the latent."),
            NWBAttributeSpec(
                name="reference_window", dtype="int32", doc="Number of future reference frames the encoder sees."
            ),
            text_attribute(
                "observation_spec",
                "JSON object describing each observation: name, size and meaning, in input order.",
            ),
            text_attribute("training", "JSON object of the training metadata: method, steps, losses, seeds."),
            text_attribute("checkpoint_sha256", "SHA-256 of the checkpoint file the network was loaded from."),
            *provenance_attributes(),
        ],
        datasets=[
            NWBDatasetSpec(
                name="observation_mean",
                dtype="float64",
                dims=["num_inputs"],
                shape=[None],
                doc="Mean subtracted from every network input before the forward pass.",
            ),
            NWBDatasetSpec(
                name="observation_std",
                dtype="float64",
                dims=["num_inputs"],
                shape=[None],
                doc="Scale every network input is divided by after subtracting the mean.",
            ),
        ],
        groups=[
            NWBGroupSpec(
                neurodata_type_def="NetworkWeights",
                neurodata_type_inc="NWBDataInterface",
                name="weights",
                doc=(
                    "The network parameters, one dataset per array, named by the parameter path with '.' "
                    "between levels (e.g. 'encoder.dense_0.kernel')."
                ),
                datasets=[
                    NWBDatasetSpec(
                        neurodata_type_def="NetworkParameter",
                        doc="One parameter array of the network (1 to 4 dimensions).",
                        dtype="numeric",
                        dims=[
                            ["dim_0"],
                            ["dim_0", "dim_1"],
                            ["dim_0", "dim_1", "dim_2"],
                            ["dim_0", "dim_1", "dim_2", "dim_3"],
                        ],
                        shape=[[None], [None, None], [None, None, None], [None, None, None, None]],
                        quantity="*",
                    )
                ],
                quantity="?",
            )
        ],
    )

    layer_activations = NWBGroupSpec(
        neurodata_type_def="LayerActivations",
        neurodata_type_inc="TimeSeries",
        doc=(
            "Activations of one network layer per control step, T x units; the group name is the layer "
            "name. The pipeline stores int16 codes with the TimeSeries 'conversion' and 'offset' (activation "
            "= data * conversion + offset; 'resolution' is the step, the error bound is stated in the "
            "description), readable by every HDF5 reader (h5wasm, MATLAB); float32 where a layer holds "
            "non-finite values. Files written by ndx-mimic 0.1.0 hold float16."
        ),
        attributes=[
            text_attribute(
                "layer_kind",
                "One of 'encoder', 'latent_mean', 'latent_scale', 'latent_sample', 'lstm_hidden', 'lstm_cell', "
                "'decoder', 'action'.",
            )
        ],
        datasets=[
            NWBDatasetSpec(
                # No dtype declared: int16 codes (with conversion/offset) or floats, and files of
                # 0.1.0 hold float16, which the schema language lacks (hdmf rejects it as 'numeric').
                name="data",
                dims=["num_times", "num_units"],
                shape=[None, None],
                doc=(
                    "Activation of every unit of the layer at every control step: int16 codes to be "
                    "multiplied by 'conversion' and shifted by 'offset', or floating point (float32; "
                    "float16 in files of 0.1.0)."
                ),
                attributes=[
                    NWBAttributeSpec(
                        name="unit",
                        dtype="text",
                        default_value="a.u.",
                        doc="Activations are dimensionless: 'a.u.'.",
                        required=False,
                    )
                ],
            )
        ],
    )

    latent_resampling = NWBGroupSpec(
        neurodata_type_def="LatentResampling",
        neurodata_type_inc="NWBDataInterface",
        default_name="latent_resampling",
        doc=(
            "Variability of the network's output under resampling of its stochastic latent at every step "
            "(the state is kept; only the latent sample changes)."
        ),
        attributes=[
            NWBAttributeSpec(name="num_samples", dtype="int32", doc="Latent samples drawn per step."),
            NWBAttributeSpec(name="seed", dtype="int32", doc="Random seed of the resampling.", required=False),
        ],
        groups=[
            NWBGroupSpec(
                name="action_std",
                neurodata_type_inc="NamedColumnSeries",
                doc="Standard deviation of each action over the samples, T x actuators (dimensionless).",
            ),
            NWBGroupSpec(
                name="latent_std",
                neurodata_type_inc="NamedColumnSeries",
                doc="Standard deviation of each latent dimension over the samples, T x latent (dimensionless).",
            ),
        ],
    )

    network_activations = NWBGroupSpec(
        neurodata_type_def="NetworkActivations",
        neurodata_type_inc="NWBDataInterface",
        default_name="NetworkActivations",
        doc="Every recorded layer of a controller network during one rollout, aligned with its steps.",
        attributes=provenance_attributes(),
        groups=[
            NWBGroupSpec(neurodata_type_inc="LayerActivations", doc="One series per recorded layer.", quantity="*"),
            NWBGroupSpec(
                name="latent_resampling",
                neurodata_type_inc="LatentResampling",
                doc="Output variability under latent resampling.",
                quantity="?",
            ),
        ],
        links=[
            NWBLinkSpec(name="controller", target_type="ControllerNetwork", doc="The network."),
            NWBLinkSpec(name="rollout", target_type="SimulationRollout", doc="The rollout it drove."),
        ],
    )

    binned_spike_counts = NWBGroupSpec(
        neurodata_type_def="BinnedSpikeCounts",
        neurodata_type_inc="NamedColumnSeries",
        doc=(
            "Spike counts of sorted units in regular time bins (T bins x U units), for sessions whose "
            "spikes are known only as counts. Columns are unit names; 'unit' is 'spikes'."
        ),
        attributes=[NWBAttributeSpec(name="bin_size", dtype="float64", doc="Bin width, in seconds.")],
        datasets=[
            NWBDatasetSpec(
                name="brain_region",
                dtype="text",
                dims=["num_columns"],
                shape=[None],
                doc="Brain region of each unit (e.g. 'DLS', 'MC').",
                quantity="?",
            ),
            NWBDatasetSpec(
                name="active",
                dtype="bool",
                dims=["num_columns"],
                shape=[None],
                doc="Whether each unit was active (included in analyses).",
                quantity="?",
            ),
        ],
    )

    encoding_results = NWBGroupSpec(
        neurodata_type_def="EncodingResults",
        neurodata_type_inc="DynamicTable",
        default_name="EncodingResults",
        doc=(
            "Cross-validated Poisson GLM encoding models: one row per unit x feature set x lag. A unit is a "
            "row of the Units table ('unit') or a column of a BinnedSpikeCounts series ('count_column')."
        ),
        attributes=[
            NWBAttributeSpec(name="bin_size", dtype="float64", doc="Spike-count bin width, in seconds."),
            NWBAttributeSpec(name="num_folds", dtype="int32", doc="Number of cross-validation folds."),
            NWBAttributeSpec(
                name="chunk_duration", dtype="float64", doc="Duration of the contiguous CV chunks, in seconds."
            ),
            text_attribute("model", "The model, e.g. 'poisson_glm'."),
            text_attribute("regularization", "'none', 'l2' or 'elastic_net'."),
            NWBAttributeSpec(name="alpha", dtype="float64", doc="Penalty strength.", required=False),
            NWBAttributeSpec(name="l1_ratio", dtype="float64", doc="Elastic-net L1 share.", required=False),
            NWBAttributeSpec(
                name="pca_variance",
                dtype="float64",
                doc="Share of variance the PCA kept (fitted on training folds only).",
                required=False,
            ),
            *provenance_attributes(),
        ],
        datasets=[
            NWBDatasetSpec(
                name="unit",
                neurodata_type_inc="DynamicTableRegion",
                doc="The unit (row of the Units table).",
                quantity="?",
            ),
            NWBDatasetSpec(
                name="count_column",
                neurodata_type_inc="VectorData",
                dtype="int32",
                doc="The unit as a column index of the linked BinnedSpikeCounts.",
                quantity="?",
            ),
            NWBDatasetSpec(
                name="brain_region", neurodata_type_inc="VectorData", dtype="text", doc="Brain region of the unit."
            ),
            NWBDatasetSpec(
                name="feature_set", neurodata_type_inc="VectorData", dtype="text", doc="Name of the feature set."
            ),
            NWBDatasetSpec(
                name="lag",
                neurodata_type_inc="VectorData",
                dtype="float64",
                doc=(
                    "Lag in seconds. Negative lags pair neural activity at t with movement at t - lag, i.e. "
                    "later movement (premotor)."
                ),
            ),
            NWBDatasetSpec(
                name="cv_llr",
                neurodata_type_inc="VectorData",
                dtype="float64",
                doc="Cross-validated log-likelihood ratio against a mean-rate model, in bits per spike.",
            ),
            NWBDatasetSpec(
                name="pseudo_r2",
                neurodata_type_inc="VectorData",
                dtype="float64",
                doc="Cross-validated deviance pseudo-R^2.",
            ),
            NWBDatasetSpec(
                name="p_value",
                neurodata_type_inc="VectorData",
                dtype="float64",
                doc="Wilcoxon signed-rank p-value of the per-chunk log-likelihood gains.",
            ),
            NWBDatasetSpec(
                name="q_value",
                neurodata_type_inc="VectorData",
                dtype="float64",
                doc="Benjamini-Hochberg q-value over all units x feature sets of the brain region.",
            ),
            NWBDatasetSpec(
                name="significant", neurodata_type_inc="VectorData", dtype="bool", doc="q-value below the threshold."
            ),
            NWBDatasetSpec(
                name="converged",
                neurodata_type_inc="VectorData",
                dtype="bool",
                doc=(
                    "Whether the solver converged in every cross-validation fold of the row's fit (files written "
                    "before 0.2.0 do not have this column)."
                ),
                quantity="?",
            ),
            NWBDatasetSpec(
                name="coefficients",
                neurodata_type_inc="VectorData",
                dtype="float64",
                doc="Fitted coefficients (intercept first), ragged.",
                quantity="?",
            ),
            NWBDatasetSpec(
                name="coefficients_index",
                neurodata_type_inc="VectorIndex",
                doc="Index of the ragged coefficients column.",
                quantity="?",
            ),
        ],
        links=[
            NWBLinkSpec(
                name="spike_counts",
                target_type="BinnedSpikeCounts",
                doc="The binned counts whose columns 'count_column' refers to.",
                quantity="?",
            )
        ],
    )

    rdm_comparisons = NWBGroupSpec(
        neurodata_type_def="RdmComparisons",
        neurodata_type_inc="DynamicTable",
        default_name="comparisons",
        doc="Comparisons between RDMs: one row per reference x candidate x method.",
        datasets=[
            NWBDatasetSpec(
                name="reference_rdm", neurodata_type_inc="VectorData", dtype="text", doc="Name of the reference RDM."
            ),
            NWBDatasetSpec(
                name="candidate_rdm", neurodata_type_inc="VectorData", dtype="text", doc="Name of the candidate RDM."
            ),
            NWBDatasetSpec(
                name="method",
                neurodata_type_inc="VectorData",
                dtype="text",
                doc="Comparison method, e.g. 'whitened_unbiased_cosine'.",
            ),
            NWBDatasetSpec(name="similarity", neurodata_type_inc="VectorData", dtype="float64", doc="The similarity."),
            NWBDatasetSpec(
                name="p_value",
                neurodata_type_inc="VectorData",
                dtype="float64",
                doc="p-value of the similarity (NaN when not computed).",
            ),
        ],
    )

    representational_similarity = NWBGroupSpec(
        neurodata_type_def="RepresentationalSimilarity",
        neurodata_type_inc="NWBDataInterface",
        default_name="RepresentationalSimilarity",
        doc="Representational dissimilarity matrices over behaviour conditions and their comparisons.",
        attributes=provenance_attributes(),
        datasets=[
            NWBDatasetSpec(
                name="rdms",
                dtype="float64",
                dims=["num_rdms", "num_conditions", "num_conditions"],
                shape=[None, None, None],
                doc="The RDMs, one C x C matrix per population, feature set or layer.",
            ),
            names_dataset("rdm_names", "num_rdms", "Name of every RDM (e.g. 'neural_DLS', 'joint_angles')."),
            names_dataset(
                "dissimilarity_measures",
                "num_rdms",
                "Dissimilarity measure of every RDM ('crossnobis', 'correlation', ...).",
            ),
            names_dataset("condition_labels", "num_conditions", "Behaviour label of every condition."),
        ],
        groups=[NWBGroupSpec(name="comparisons", neurodata_type_inc="RdmComparisons", doc="The comparisons.")],
    )

    return [
        named_column_series,
        body_model,
        joint_state_series,
        keypoint_sites,
        stac_registration,
        episodes,
        simulation_rollout,
        controller_network,
        layer_activations,
        latent_resampling,
        network_activations,
        binned_spike_counts,
        encoding_results,
        rdm_comparisons,
        representational_similarity,
    ]


def main(output_dir: Path = Path(__file__).parent):
    ns_builder = NWBNamespaceBuilder(
        name=NAMESPACE,
        version=VERSION,
        doc=(
            "NWB extension for MIMIC virtual-animal sessions: MuJoCo body models, STAC registrations of a "
            "body model to 3D keypoints, simulated joint states, controller networks and their activations, "
            "and the encoding-model and representational-similarity results that relate them to neurons."
        ),
        author=["ndx-mimic developers"],
        contact=["ndx-mimic@users.noreply.github.com"],
    )
    ns_builder.include_namespace("core")
    ns_builder.include_namespace("ndx-pose")
    export_spec(ns_builder, build_types(), str(output_dir))


if __name__ == "__main__":
    main()
