"""Simulation on a session: inverse-dynamics replay, controller training, rollouts; appended.

Data flow through the file: the StacRegistration's qpos → ``inverse_dynamics_session`` appends
a SimulationRollout (mode ``inverse_dynamics``: the smoothed reference, its qvel/qacc, forces,
activations and controls) → ``train_controller_session`` trains on that rollout and appends a
ControllerNetwork (architecture, normalisation and the weights, from which the checkpoint is
rebuilt byte for byte) → ``simulate_session`` runs the controller against the same reference and
appends a SimulationRollout (``closed_loop`` / ``open_loop``) and its NetworkActivations.
"""

import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..body_model import column_names
from ..errors import InputError
from ..session import append, read_session
from ..storage import compressed, quantized

ID_NAME = "SimulationRollout_inverse_dynamics"
CONTROLLER_NAME = "ControllerNetwork"
TRACKING_UNITS = {"total_error": "meters", "pose_error": "meters", "body_error": "meters",
                  "dm_control_error": "meters and radians (0.5 mean |dx| + 0.5 mean |dq|)",
                  "root_distance": "meters^2", "joint_distance": "radians^2", "quat_distance": "radians^2",
                  "trackmjx_terminate": "dimensionless"}


def _result(nwbfile, path, name, kind):
    module = nwbfile.processing.get("mimic")
    obj = module.data_interfaces.get(name) if module else None
    if obj is None or type(obj).__name__ != kind:
        raise InputError(f"{path}: no {kind} named {name!r} in processing/mimic")
    return obj


def _results(nwbfile):
    module = nwbfile.processing.get("mimic")
    return module.data_interfaces if module else {}


def compile_body_model(body_model):
    """The MjModel of a stored ndx-mimic BodyModel (its MJCF and assets)."""
    import mujoco

    return mujoco.MjModel.from_xml_string(body_model.mjcf, body_model.assets)


def _joint_series(name, data, body_model, kind, units, timing, description):
    import ndx_mimic

    names = {"qpos": body_model.qpos_names, "qvel": body_model.qvel_names, "actuator": body_model.actuator_names}[kind]
    column_units = list(units) if units is not None else None
    return ndx_mimic.JointStateSeries(
        name=name,
        data=compressed(np.asarray(data)),
        unit="mixed" if column_units and len(set(column_units)) > 1 else (column_units[0] if column_units else "dimensionless"),
        column_names=list(names[:]),
        column_units=column_units if column_units and len(set(column_units)) > 1 else None,
        body_model=body_model,
        description=description,
        **timing,
    )


def _units(model, kind):
    """Per-column SI units of a ``kind`` of series: 'qpos', 'qvel', 'qacc' or 'force' (generalised)."""
    _, qpos_units, _, qvel_units = column_names(model)
    if kind == "qpos":
        return qpos_units
    if kind == "qvel":
        return qvel_units
    per_second = {"qacc": {"meters/second": "meters/second^2", "radians/second": "radians/second^2"},
                  "force": {"meters/second": "newtons", "radians/second": "newton-meters"}}[kind]
    return [per_second[unit] for unit in qvel_units]


def _episodes(starts, stops, frames_time, reasons, returns):
    import ndx_mimic

    table = ndx_mimic.RolloutEpisodes(name="episodes", description="Episodes of the rollout.")
    for start, stop, reason, value in zip(starts, stops, reasons, returns):
        table.add_row(
            start_time=float(frames_time(start)),
            stop_time=float(frames_time(stop)),
            start_frame=int(start),
            termination_reason=str(reason),
            episode_return=float(value),
        )
    return table


def inverse_dynamics_session(session, registration="StacRegistration", config=None, name=ID_NAME, replace=False):
    """Replay the registration by inverse dynamics; append SimulationRollout (mode inverse_dynamics)."""
    from .inverse_dynamics import InverseDynamicsConfig, run_inverse_dynamics

    config = config or InverseDynamicsConfig()
    session = Path(session)
    with read_session(session) as nwbfile:
        if not replace and name in _results(nwbfile):
            raise InputError(f"{session}: processing/mimic/{name} already exists; pass replace (--replace) to replace it")
        stac = _result(nwbfile, session, registration, "StacRegistration")
        qpos = np.asarray(stac.qpos.data[:])
        if stac.qpos.rate is None:
            raise InputError(f"{session}: {registration} has irregular timestamps; inverse dynamics needs a frame rate")
        rate, start = stac.qpos.rate, stac.qpos.starting_time
        if not np.isfinite(qpos).all():
            bad = np.flatnonzero(~np.isfinite(qpos).all(axis=1))
            raise InputError(f"{session}: {registration} has NaN in {len(bad)} frame(s) (first {bad[0]}); "
                             "inverse dynamics needs every frame fitted")
        model = compile_body_model(stac.body_model)
    try:
        result = run_inverse_dynamics(qpos, model, rate, config)
    except ValueError as error:
        raise InputError(f"{session}: {error}") from None
    with append(session, replace=[name] if replace else ()) as s:
        s.check_new(name)
        mimic = s.nwbfile.processing["mimic"]
        stac = mimic[registration]
        body_model = stac.body_model
        timing = dict(rate=rate, starting_time=start)
        series = dict(
            qpos=_joint_series("qpos", result.qpos, body_model, "qpos", _units(model, "qpos"), timing,
                               "Smoothed reference poses that were replayed."),
            qvel=_joint_series("qvel", result.qvel, body_model, "qvel", _units(model, "qvel"), timing,
                               "Generalised velocities on the configuration manifold."),
            qacc=_joint_series("qacc", result.qacc, body_model, "qvel", _units(model, "qacc"), timing,
                               "Generalised accelerations."),
            generalized_forces=_joint_series("generalized_forces", result.generalized_forces, body_model, "qvel",
                                             _units(model, "force"), timing, "mj_inverse: forces that produce the motion."),
            residual_forces=_joint_series("residual_forces", result.residual_forces, body_model, "qvel",
                                          _units(model, "force"), timing,
                                          "Generalised forces the actuators cannot produce (root, unactuated directions)."),
            actuator_forces=_joint_series("actuator_forces", result.actuator_forces, body_model, "actuator",
                                          ["newton-meters"] * model.nu, timing, "Actuator forces."),
            actuator_activations=_joint_series("actuator_activations", result.actuator_activations, body_model,
                                               "actuator", None, timing, "Activation states (act), dimensionless."),
            actuator_controls=_joint_series("actuator_controls", result.actuator_controls, body_model, "actuator",
                                            None, timing, "Controls that produce the activations (filter inverted)."),
        )
        import ndx_mimic

        rollout = ndx_mimic.SimulationRollout(
            name=name,
            mode="inverse_dynamics",
            physics_timestep=result.timestep,
            control_timestep=1.0 / rate,
            episodes=_episodes([0], [len(qpos)], lambda f: start + f / rate, ["end_of_reference"], [np.nan]),
            body_model=body_model,
            reference=stac,
            **series,
        )
        s.add(rollout, parameters={**config.to_dict(), "report": result.report.to_dict()})
    return f"{session}: processing/mimic/{name}: {len(qpos)} frames; {result.report.summary().splitlines()[0]}", result


def _reference_from_rollout(rollout, rate):
    from ..controller import ReferenceTrajectory

    return ReferenceTrajectory(
        qpos=np.asarray(rollout.qpos.data[:]),
        qvel=np.asarray(rollout.qvel.data[:]),
        frame_rate=rate,
        activations=np.asarray(rollout.actuator_activations.data[:]),
    )


def checkpoint_to_nwb(checkpoint, name=CONTROLLER_NAME):
    """A ControllerNetwork holding every entry of the checkpoint (it can be rebuilt from the file)."""
    import ndx_mimic

    from ..controller.checkpoint import _entries

    entries = _entries(checkpoint)
    scalars = [key for key, value in entries.items() if value.dtype.kind in "fiu" and value.ndim == 0]
    if scalars:  # NetworkParameter datasets have 1 to 4 dimensions
        raise ValueError(f"checkpoint: scalar entries {scalars} cannot be stored as network parameters")
    weights = ndx_mimic.NetworkWeights(
        network_parameters=[
            ndx_mimic.NetworkParameter(name=key.replace("/", "."), data=value)
            for key, value in entries.items()
            if value.dtype.kind in "fiu"
        ]
    )
    stats = checkpoint.config.observation.normalisation()
    config = checkpoint.config
    return ndx_mimic.ControllerNetwork(
        name=name,
        architecture=str(entries["config"][()]),
        decoder_kind=config.decoder,
        latent_size=config.latent_size,
        reference_window=config.observation.reference_window,
        observation_spec=json.dumps(config.to_json_dict().get("observation", {}), sort_keys=True),
        training=str(entries["training"][()]),
        checkpoint_sha256=checkpoint.sha256,
        observation_mean=np.concatenate([stats["reference_mean"], stats["proprioception_mean"]]).astype(np.float64),
        observation_std=np.concatenate([stats["reference_std"], stats["proprioception_std"]]).astype(np.float64),
        weights=weights,
    )


def checkpoint_from_nwb(controller, path="session"):
    """Rebuild the checkpoint stored in a ControllerNetwork; its sha256 must match."""
    from ..controller.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, checkpoint_from_bytes

    if controller.weights is None:
        raise InputError(f"{path}: ControllerNetwork '{controller.name}' holds no weights; pass --checkpoint")
    entries = {
        "format": np.array(json.dumps({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}, sort_keys=True)),
        "config": np.array(controller.architecture),
        "training": np.array(controller.training),
        "sha256": np.array(controller.checkpoint_sha256),
    }
    for key, parameter in controller.weights.network_parameters.items():
        entries[key.replace(".", "/")] = np.asarray(parameter.data[:])
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    try:
        return checkpoint_from_bytes(buffer.getvalue(), f"{path}: ControllerNetwork '{controller.name}'")
    except ValueError as error:
        raise InputError(str(error)) from None


def train_controller_session(session, checkpoint_path, inverse_dynamics=ID_NAME, config=None, training=None,
                             name=CONTROLLER_NAME, replace=False, progress=None, method="dagger",
                             distillation=None, expert=None, resume=False):
    """Train the controller on the reference of the inverse-dynamics rollout; save the checkpoint;
    append ControllerNetwork (with the training log in its ``training`` attribute).

    Args:
        session: the session file.
        checkpoint_path: where the checkpoint is saved (.npz; with ``"dagger"`` after every
            iteration, so an interrupted run can be resumed).
        inverse_dynamics: the SimulationRollout (mode inverse_dynamics) whose poses, velocities
            and activations are the reference.
        config: the network's sizes (ControllerConfig; default the paper's).
        training: for ``"supervised"``, the TrainingConfig; for ``"dagger"``, when given, it
            replaces the distillation's optimisation settings and its ``steps`` become the steps
            per iteration.
        method: ``"dagger"`` (default): distil the tracking expert on the states the network
            visits (``simulate.distill``); ``"supervised"``: fit the inverse-dynamics controls on
            the reference states only (the earlier baseline, which does not close the loop).
        distillation: DistillationConfig (``"dagger"``; default ``DistillationConfig()``).
        expert: ExpertConfig of the teacher (``"dagger"``; default ``ExpertConfig()``).
        resume: continue from the checkpoint at ``checkpoint_path`` (its weights, normalisation
            and iteration count) instead of starting afresh.
        progress: a progress bar (tqdm, on stderr) over the iterations or optimiser steps.
    """
    from ..controller import build_training_set, load_checkpoint, save_checkpoint, train_controller

    if method not in ("dagger", "supervised"):
        raise InputError(f"method: expected 'dagger' or 'supervised', got {method!r}")
    session = Path(session)
    checkpoint_path = Path(checkpoint_path)
    with read_session(session) as nwbfile:
        if not replace and name in _results(nwbfile):
            raise InputError(f"{session}: processing/mimic/{name} already exists; pass replace (--replace) to replace it")
        rollout = _result(nwbfile, session, inverse_dynamics, "SimulationRollout")
        if rollout.mode != "inverse_dynamics":
            raise InputError(f"{session}: {inverse_dynamics} is a {rollout.mode} rollout, not inverse dynamics")
        model = compile_body_model(rollout.body_model)
        reference = _reference_from_rollout(rollout, 1.0 / rollout.control_timestep)
        controls = np.asarray(rollout.actuator_controls.data[:])
    initial = None
    if resume:
        try:
            initial = load_checkpoint(checkpoint_path)
        except (ValueError, OSError) as error:
            raise InputError(f"{checkpoint_path}: cannot resume: {error}") from None
    if method == "supervised":
        window = config.observation.reference_window if config else 5
        data = build_training_set(model, reference, controls, reference_window=window)
        bar, report = _progress_bar(progress, "training", "step")
        try:
            result = train_controller(data, config, training, initial=initial, progress=report)
        finally:
            bar.close()
        checkpoint, parameters = result.checkpoint, {"method": method,
                                                     "training": asdict(training) if training else None}
        history = result.history
        detail = (f"{len(history['step'])} log entries, final loss {result.final_loss:.4g}, validation MSE "
                  f"{history['validation_mse'][-1]:.4g}")
    else:
        from dataclasses import replace as replace_fields

        from .distill import DistillationConfig, distill_controller
        from .expert import ExpertConfig, TrackingExpert

        distillation = distillation or DistillationConfig()
        if training is not None:
            distillation = replace_fields(distillation, training=training, steps_per_iteration=training.steps)
        expert_config = expert or ExpertConfig()
        try:
            teacher = TrackingExpert(model, reference, expert_config)
        except ValueError as error:
            raise InputError(f"{session}: {error}") from None
        n_iter = distillation.iterations
        bar, report = _progress_bar(progress, "DAgger", "iteration", total=n_iter)

        def iteration(entry, checkpoint):
            save_checkpoint(checkpoint_path, checkpoint)  # resumable after every iteration
            report(entry)

        try:
            result = distill_controller(model, reference, teacher, config, distillation, initial=initial,
                                        on_iteration=iteration)
        except ValueError as error:
            raise InputError(f"{session}: {error}") from None
        finally:
            bar.close()
        checkpoint = result.checkpoint
        parameters = {"method": method, "distillation": distillation.to_dict(), "expert": expert_config.to_dict(),
                      "resumed": bool(resume)}
        last = result.log[-1]
        detail = (f"{len(result.log)} DAgger iterations, student's last pass: {last['episodes']} episodes, median "
                  f"{last['median_episode_frames']:.0f} frames, mean total error {1000 * last['mean_total_error_m']:.1f} mm "
                  f"(before its last training), final loss {last['final_loss']:.4g}")
    sha = save_checkpoint(checkpoint_path, checkpoint)
    with append(session, replace=[name] if replace else ()) as s:
        s.check_new(name)
        s.add(checkpoint_to_nwb(checkpoint, name), parameters={
            **parameters, "inverse_dynamics": inverse_dynamics, "checkpoint": str(checkpoint_path)})
    return (f"{session}: processing/mimic/{name}: {detail}, {result.wall_time:.0f} s; checkpoint {checkpoint_path} "
            f"(sha256 {sha[:12]}...)"), result


def _progress_bar(enabled, desc, unit, total=None):
    """(bar, callback) for the training loops: a tqdm bar on stderr, or a silent stand-in.
    The callback takes a supervised step (step, steps, loss) or a DAgger log entry (dict)."""
    class _Silent:
        def close(self):
            pass

    if not enabled:
        return _Silent(), (lambda *args: None)
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, leave=False)

    def report(*args):
        if len(args) == 1 and isinstance(args[0], dict):
            entry = args[0]
            bar.update(1)
            bar.set_postfix(median=f"{entry['median_episode_frames']:.0f} fr",
                            error=f"{1000 * entry['mean_total_error_m']:.1f} mm", loss=f"{entry['final_loss']:.3g}")
        else:
            step, steps, loss = args
            bar.total = steps
            bar.n = step
            bar.set_postfix(loss=f"{loss:.3g}")
            bar.refresh()

    return bar, report


def _tracking_series(result, timing):
    """The rollout's per-frame tracking measures as a NamedColumnSeries (columns with their units)."""
    import ndx_mimic

    from .tracking import TRACKING_COLUMNS

    units = [TRACKING_UNITS[c] for c in TRACKING_COLUMNS]
    return ndx_mimic.NamedColumnSeries(
        name="tracking_errors", data=compressed(result.tracking), unit="mixed", column_names=list(TRACKING_COLUMNS),
        column_units=units, description=(
            "Tracking of the reference by each simulated state at its frame (before any restart there): total and "
            "pose (rigidly aligned, no scaling) keypoint-site error, body error of the keypoint-carrying bodies "
            "(termination), dm_control's termination metric, track-mjx's distances and termination rule. NaN on "
            "the first frame (not simulated)."), **timing)


def episode_lengths(rollout) -> np.ndarray:
    """(E,) lengths in frames (control steps) of the episodes of a stored SimulationRollout, from
    its episodes table: what ``tracking.survival_curve`` takes."""
    table = rollout.episodes
    start = np.asarray(table["start_time"].data[:], dtype=float)
    stop = np.asarray(table["stop_time"].data[:], dtype=float)
    return np.rint((stop - start) / rollout.control_timestep).astype(int)


def expert_session(session, config=None, inverse_dynamics=ID_NAME, label=None, replace=False, progress=None):
    """Track the reference with the expert (no network); append SimulationRollout_<label> (mode expert)."""
    from pynwb import TimeSeries

    import ndx_mimic

    from .rollout import RolloutConfig, run_rollout

    config = config or RolloutConfig(mode="expert")
    if config.mode != "expert":
        raise ValueError(f"config: mode {config.mode!r} is not 'expert'")
    name = f"SimulationRollout_{label or config.mode}"
    session = Path(session)
    with read_session(session) as nwbfile:
        if not replace and name in _results(nwbfile):
            raise InputError(f"{session}: processing/mimic/{name} already exists; pass replace (--replace) to replace it")
        rollout_id = _result(nwbfile, session, inverse_dynamics, "SimulationRollout")
        model = compile_body_model(rollout_id.body_model)
        rate = 1.0 / rollout_id.control_timestep
        start = rollout_id.qpos.starting_time
        reference = _reference_from_rollout(rollout_id, rate)
    try:
        result = run_rollout(model, reference, None, config, progress=progress)
    except ValueError as error:
        raise InputError(f"{session}: {error}") from None
    with append(session, replace=[name] if replace else ()) as s:
        s.check_new(name)
        id_rollout = s.nwbfile.processing["mimic"][inverse_dynamics]
        body_model = id_rollout.body_model
        timing = dict(rate=rate, starting_time=start + result.frames[0] / rate)
        terms = sorted(result.reward_terms)
        episodes = result.episodes
        rollout = ndx_mimic.SimulationRollout(
            name=name,
            mode="expert",
            physics_timestep=result.timestep,
            control_timestep=1.0 / rate,
            seed=int(config.expert.seed),
            qpos=_joint_series("qpos", result.qpos, body_model, "qpos", _units(model, "qpos"), timing, "Simulated poses."),
            qvel=_joint_series("qvel", result.qvel, body_model, "qvel", _units(model, "qvel"), timing,
                               "Simulated velocities."),
            actuator_controls=_joint_series("actuator_controls", result.actuator_controls, body_model, "actuator", None,
                                            timing, "The expert's controls."),
            actuator_activations=_joint_series("actuator_activations", result.actuator_activations, body_model,
                                               "actuator", None, timing, "Activation states (act)."),
            actuator_forces=_joint_series("actuator_forces", result.actuator_forces, body_model, "actuator",
                                          ["newton-meters"] * model.nu, timing, "Actuator forces."),
            reward=TimeSeries(name="reward", data=result.reward, unit="dimensionless",
                              description="Total reward (track-mjx's terms).", **timing),
            reward_terms=ndx_mimic.NamedColumnSeries(
                name="reward_terms", data=np.stack([result.reward_terms[t] for t in terms], axis=1),
                unit="dimensionless", column_names=terms, description="Reward terms (track-mjx).", **timing),
            tracking_errors=_tracking_series(result, timing),
            episodes=_episodes(episodes.start_frame, episodes.stop_frame, lambda f: start + f / rate,
                               episodes.termination, episodes.episode_return),
            body_model=body_model,
            reference=id_rollout.reference,
        )
        s.add(rollout, parameters={**config.to_dict(), "reference": inverse_dynamics,
                                   "cpu_seconds": float(result.cpu_time)})
    return f"{session}: processing/mimic/{name}: {result.summary()}", result


def simulate_session(session, config=None, checkpoint=None, controller=CONTROLLER_NAME, inverse_dynamics=ID_NAME,
                     label=None, replace=False, progress=None):
    """Run the controller against the reference; append SimulationRollout_<label> and NetworkActivations_<label>.
    Mode ``expert`` runs the tracking expert instead (``expert_session``: no controller, no activations)."""
    import ndx_mimic

    from ..controller import load_checkpoint
    from .rollout import RolloutConfig, run_rollout

    config = config or RolloutConfig()
    if config.mode == "expert":
        return expert_session(session, config, inverse_dynamics, label, replace, progress)
    label = label or config.mode
    names = (f"SimulationRollout_{label}", f"NetworkActivations_{label}")
    session = Path(session)
    with read_session(session) as nwbfile:
        rollout_id = _result(nwbfile, session, inverse_dynamics, "SimulationRollout")
        model = compile_body_model(rollout_id.body_model)
        rate = 1.0 / rollout_id.control_timestep
        start = rollout_id.qpos.starting_time
        reference = _reference_from_rollout(rollout_id, rate)
        if checkpoint is None:
            ckpt = checkpoint_from_nwb(_result(nwbfile, session, controller, "ControllerNetwork"), session)
        else:
            try:
                ckpt = load_checkpoint(checkpoint)
            except (ValueError, OSError) as error:
                raise InputError(f"{checkpoint}: {error}") from None
    try:
        result = run_rollout(model, reference, ckpt, config, progress=progress)
    except ValueError as error:
        raise InputError(f"{session}: {error}") from None
    replace_names = list(names) if replace else []
    with append(session, replace=replace_names) as s:
        for n in names:
            s.check_new(n)
        mimic = s.nwbfile.processing["mimic"]
        id_rollout = mimic[inverse_dynamics]
        body_model = id_rollout.body_model
        if checkpoint is None:
            controller_obj = mimic[controller]
        else:
            controller_obj = s.add(checkpoint_to_nwb(ckpt, f"{CONTROLLER_NAME}_{label}"),
                                   parameters={"checkpoint": str(checkpoint)})
        t0 = start + result.frames[0] / rate
        timing = dict(rate=rate, starting_time=t0)
        series = dict(
            qpos=_joint_series("qpos", result.qpos, body_model, "qpos", _units(model, "qpos"), timing, "Simulated poses."),
            qvel=_joint_series("qvel", result.qvel, body_model, "qvel", _units(model, "qvel"), timing, "Simulated velocities."),
            actuator_controls=_joint_series("actuator_controls", result.actuator_controls, body_model, "actuator", None,
                                            timing, "Controller actions (controls)."),
            actuator_activations=_joint_series("actuator_activations", result.actuator_activations, body_model,
                                               "actuator", None, timing, "Activation states (act)."),
            actuator_forces=_joint_series("actuator_forces", result.actuator_forces, body_model, "actuator",
                                          ["newton-meters"] * model.nu, timing, "Actuator forces."),
        )
        from pynwb import TimeSeries

        terms = sorted(result.reward_terms)
        episodes = result.episodes
        rollout = ndx_mimic.SimulationRollout(
            name=names[0],
            mode=result.mode,
            physics_timestep=result.timestep,
            control_timestep=1.0 / rate,
            seed=int(result.seed),
            reward=TimeSeries(name="reward", data=result.reward, unit="dimensionless", description="Total reward.", **timing),
            reward_terms=ndx_mimic.NamedColumnSeries(
                name="reward_terms", data=np.stack([result.reward_terms[t] for t in terms], axis=1),
                unit="dimensionless", column_names=terms, description="Reward terms.", **timing),
            tracking_errors=_tracking_series(result, timing),
            episodes=_episodes(episodes.start_frame, episodes.stop_frame, lambda f: start + f / rate,
                               episodes.termination, episodes.episode_return),
            body_model=body_model,
            reference=id_rollout.reference,
            controller=controller_obj,
            **series,
        )
        s.add(rollout, parameters={**config.to_dict(), "controller_sha256": result.controller_sha256,
                                   "reference": inverse_dynamics})
        resampling = None
        if result.latent_resampling is not None:
            r = result.latent_resampling
            resampling = ndx_mimic.LatentResampling(
                name="latent_resampling", num_samples=int(r.n_samples), seed=int(result.seed),
                action_std=ndx_mimic.NamedColumnSeries(
                    name="action_std", data=compressed(r.action_std), unit="dimensionless",
                    column_names=list(body_model.actuator_names[:]), description="Action std over latent samples.", **timing),
                latent_std=ndx_mimic.NamedColumnSeries(
                    name="latent_std", data=compressed(r.latent_std), unit="dimensionless",
                    column_names=[f"latent_{i}" for i in range(r.latent_std.shape[1])],
                    description="Latent std over samples.", **timing),
            )
        layers = [
            ndx_mimic.LayerActivations(name=layer, layer_kind=result.layer_kinds[layer],
                                       **quantized(values, f"{result.layer_kinds[layer]} layer '{layer}'."), **timing)
            for layer, values in result.activations.items()
        ]
        s.add(ndx_mimic.NetworkActivations(name=names[1], layer_activations=layers, latent_resampling=resampling,
                                           controller=controller_obj, rollout=rollout),
              parameters={"dtype": "int16", "rollout": names[0]})
    lengths = episodes.length / rate
    return (
        f"{session}: processing/mimic/{names[0]} + {names[1]}: {result.n_frames} steps, {len(episodes)} episodes "
        f"(mean {lengths.mean():.2f} s, median {np.median(lengths):.2f} s, longest {lengths.max():.2f} s), mean total "
        f"error {1000 * np.nanmean(result.total_error):.1f} mm, pose error {1000 * np.nanmean(result.pose_error):.1f} mm, "
        f"{len(layers)} layers"
    ), result
