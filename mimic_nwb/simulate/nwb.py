"""Simulation on a session: inverse-dynamics replay, controller training, rollouts; appended.

Data flow through the file: the StacRegistration's qpos → :func:`inverse_dynamics` appends a
SimulationRollout (mode ``inverse_dynamics``: the smoothed reference, its qvel/qacc, forces,
activations and controls) → :func:`train_controller` trains on that rollout and appends a
ControllerNetwork (architecture, normalisation and the weights, from which the checkpoint is
rebuilt byte for byte) → :func:`simulate` runs the controller (or the tracking expert) against the
same reference and appends a SimulationRollout (``closed_loop`` / ``open_loop`` / ``expert``) and,
for the network, its NetworkActivations. Both stages follow the stage API (notes in
``mimic_nwb.session``): a Session or a path, a typed config, ``name`` / ``replace`` / ``progress``,
a typed result with ``summary()``.
"""

from dataclasses import asdict, dataclass
from dataclasses import replace as replace_fields
from pathlib import Path

import numpy as np
from pynwb import TimeSeries

import ndx_mimic
from ndx_mimic import ControllerNetwork, SimulationRollout, StacRegistration

from ..body_model import column_names
from ..controller import ControllerConfig, TrainingConfig, build_training_set, load_checkpoint, save_checkpoint
from ..controller import train_controller as fit_controller
from ..controller.nwb import checkpoint_from_nwb, checkpoint_to_nwb
from ..errors import InputError
from ..session import RESULTS_MODULE, opened
from ..storage import compressed, quantized, stored
from .distill import DistillationConfig, distill_controller
from .expert import ExpertConfig, TrackingExpert
from .inverse_dynamics import InverseDynamicsConfig, InverseDynamicsResult, run_inverse_dynamics
from .rollout import RolloutConfig, RolloutResult, run_rollout

ID_NAME = "SimulationRollout_inverse_dynamics"
# Frames of a rollout prepared and recorded at a time (memory on long sessions: run_rollout)
ROLLOUT_BLOCK_FRAMES = 4096
CONTROLLER_NAME = "ControllerNetwork"
TRACKING_UNITS = {
    "total_error": "meters",
    "pose_error": "meters",
    "body_error": "meters",
    "dm_control_error": "meters and radians (0.5 mean |dx| + 0.5 mean |dq|)",
    "root_distance": "meters^2",
    "joint_distance": "radians^2",
    "quat_distance": "radians^2",
    "trackmjx_terminate": "dimensionless",
}


def compile_body_model(body_model):
    """The MjModel of a stored ndx-mimic BodyModel (its MJCF and assets)."""
    import mujoco

    return mujoco.MjModel.from_xml_string(body_model.mjcf, body_model.assets)


def _joint_series(name, data, body_model, kind, units, timing, description):
    names = {"qpos": body_model.qpos_names, "qvel": body_model.qvel_names, "actuator": body_model.actuator_names}[kind]
    column_units = list(units) if units is not None else None
    return ndx_mimic.JointStateSeries(
        name=name,
        data=stored(data),
        unit="mixed"
        if column_units and len(set(column_units)) > 1
        else (column_units[0] if column_units else "dimensionless"),
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
    per_second = {
        "qacc": {"meters/second": "meters/second^2", "radians/second": "radians/second^2"},
        "force": {"meters/second": "newtons", "radians/second": "newton-meters"},
    }[kind]
    return [per_second[unit] for unit in qvel_units]


def _episodes(starts, stops, frames_time, reasons, returns):
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


@dataclass(frozen=True, eq=False)
class InverseDynamicsStageResult:
    """What :func:`inverse_dynamics` appended and computed.

    ``path`` is the session file; ``name`` the rollout's path (``processing/mimic/<name>``, a
    SimulationRollout of mode ``inverse_dynamics``); ``registration`` the path of the
    StacRegistration replayed; ``result`` the core's
    :class:`~mimic_nwb.simulate.inverse_dynamics.InverseDynamicsResult` (qpos (T, nq), qvel and
    qacc (T, nv), generalised and residual forces (T, nv) N / N m, actuator forces (T, nu) N m,
    activations (T, na) and controls (T, nu), the residual report: see there).
    """

    path: Path
    name: str
    registration: str
    result: InverseDynamicsResult

    @property
    def n_frames(self) -> int:
        """Frames replayed."""
        return len(self.result.qpos)

    def summary(self) -> str:
        """One line: frames replayed and the residual report's first line."""
        return f"{self.path}: {self.name}: {self.n_frames} frames; {self.result.report.summary().splitlines()[0]}"


def _check_free(session, names):
    """Refuse before the work (seconds to minutes) what the append would refuse after it: a name taken."""
    module = session.nwbfile.processing.get(RESULTS_MODULE)
    for name in names:
        if module is not None and name in module.data_interfaces:
            raise InputError(
                f"{session.path}: processing/{RESULTS_MODULE}/{name} already exists; pass replace (--replace) to replace it"
            )


def _frame_progress(enabled, desc):
    """``(callback(done, total), close)`` of a tqdm bar on stderr over frames, or silent ones."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="frame", leave=False)

    def report(done, total):
        bar.total = total
        bar.update(done - bar.n)

    return report, bar.close


def inverse_dynamics(
    session,
    config: InverseDynamicsConfig | None = None,
    *,
    registration=None,
    name=ID_NAME,
    replace=False,
    progress=False,
) -> InverseDynamicsStageResult:
    """Replay the registration by inverse dynamics; append a SimulationRollout (mode ``inverse_dynamics``).

    ``session`` is a :class:`~mimic_nwb.session.Session` opened with mode ``"a"`` or a session
    path; ``config`` the :class:`~mimic_nwb.simulate.inverse_dynamics.InverseDynamicsConfig`
    (default ``InverseDynamicsConfig()``). ``registration`` names the StacRegistration replayed
    (default: the only one; several is an error naming them); it needs a frame rate and every
    frame fitted. The rollout goes to ``processing/mimic/<name>`` (linked to the registration and
    its body model); ``replace`` replaces a result of that name; ``progress`` shows a progress bar.
    The registration is checked at the append: a rollout never links a registration replaced
    meanwhile. Returns an :class:`InverseDynamicsStageResult`.
    """
    config = config or InverseDynamicsConfig()
    with opened(session) as session:
        path = session.path
        if not replace:
            _check_free(session, (name,))
        stac = session.result(StacRegistration, registration)
        label = f"processing/{RESULTS_MODULE}/{stac.name}"
        if stac.qpos.rate is None:
            raise InputError(f"{path}: {label} has irregular timestamps; inverse dynamics needs a frame rate")
        qpos = np.asarray(stac.qpos.data[:])
        rate, start = float(stac.qpos.rate), float(stac.qpos.starting_time)
        if not np.isfinite(qpos).all():
            bad = np.flatnonzero(~np.isfinite(qpos).all(axis=1))
            raise InputError(
                f"{path}: {label} has NaN in {len(bad)} frame(s) (first {bad[0]}); "
                "inverse dynamics needs every frame fitted"
            )
        model = compile_body_model(stac.body_model)
        inputs = session.object_ids(stac)
        report, close = _frame_progress(progress, "inverse dynamics")
        try:
            # per-frame results go to scratch files beside the session, block by block
            result = run_inverse_dynamics(qpos, model, rate, config, progress=report, scratch=path.parent)
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None
        finally:
            close()
        with session.append(replace=[name] if replace else (), inputs=inputs) as s:
            s.check_new(name)
            # the working copy's registration, checked to be the one replayed
            stac = s.input(label, inputs[label])
            body_model = stac.body_model
            timing = dict(rate=rate, starting_time=start)
            series = dict(
                qpos=_joint_series(
                    "qpos",
                    result.qpos,
                    body_model,
                    "qpos",
                    _units(model, "qpos"),
                    timing,
                    "Smoothed reference poses that were replayed.",
                ),
                qvel=_joint_series(
                    "qvel",
                    result.qvel,
                    body_model,
                    "qvel",
                    _units(model, "qvel"),
                    timing,
                    "Generalised velocities on the configuration manifold.",
                ),
                qacc=_joint_series(
                    "qacc", result.qacc, body_model, "qvel", _units(model, "qacc"), timing, "Generalised accelerations."
                ),
                generalized_forces=_joint_series(
                    "generalized_forces",
                    result.generalized_forces,
                    body_model,
                    "qvel",
                    _units(model, "force"),
                    timing,
                    "mj_inverse: forces that produce the motion.",
                ),
                residual_forces=_joint_series(
                    "residual_forces",
                    result.residual_forces,
                    body_model,
                    "qvel",
                    _units(model, "force"),
                    timing,
                    "Generalised forces the actuators cannot produce (root, unactuated directions).",
                ),
                actuator_forces=_joint_series(
                    "actuator_forces",
                    result.actuator_forces,
                    body_model,
                    "actuator",
                    ["newton-meters"] * model.nu,
                    timing,
                    "Actuator forces.",
                ),
                actuator_activations=_joint_series(
                    "actuator_activations",
                    result.actuator_activations,
                    body_model,
                    "actuator",
                    None,
                    timing,
                    "Activation states (act), dimensionless.",
                ),
                actuator_controls=_joint_series(
                    "actuator_controls",
                    result.actuator_controls,
                    body_model,
                    "actuator",
                    None,
                    timing,
                    "Controls that produce the activations (filter inverted).",
                ),
            )
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
            s.add(rollout, parameters={**config.to_dict(), "registration": label, "report": result.report.to_dict()})
    return InverseDynamicsStageResult(
        path=path, name=f"processing/{RESULTS_MODULE}/{name}", registration=label, result=result
    )


def _reference_from_rollout(rollout, rate):
    from ..controller import ReferenceTrajectory

    return ReferenceTrajectory(
        qpos=np.asarray(rollout.qpos.data[:]),
        qvel=np.asarray(rollout.qvel.data[:]),
        frame_rate=rate,
        activations=np.asarray(rollout.actuator_activations.data[:]),
    )


@dataclass(frozen=True, eq=False)
class TrainControllerResult:
    """What :func:`train_controller` appended and computed.

    ``path`` is the session file; ``name`` the ControllerNetwork's path in it; ``checkpoint`` the
    checkpoint file written (``sha256`` its digest); ``method`` ``"dagger"`` or ``"supervised"``;
    ``reference`` the inverse-dynamics rollout trained on; ``result`` the core's result (a
    :class:`~mimic_nwb.simulate.distill.DistillationResult` with the per-iteration ``log``, or a
    :class:`~mimic_nwb.controller.training.TrainingResult` with its ``history``).
    """

    path: Path
    name: str
    checkpoint: Path
    sha256: str
    method: str
    reference: str
    result: object

    def summary(self) -> str:
        """One line: what was appended, how training ended, the wall time and the checkpoint."""
        result = self.result
        if self.method == "supervised":
            history = result.history
            detail = (
                f"{len(history['step'])} log entries, final loss {result.final_loss:.4g}, validation MSE "
                f"{history['validation_mse'][-1]:.4g}"
            )
        else:
            last = result.log[-1]
            detail = (
                f"{len(result.log)} DAgger iterations, last pass ({last['actor']} driving): {last['episodes']} "
                f"episodes, median {last['median_episode_frames']:.0f} frames, mean total error "
                f"{1000 * last['mean_total_error_m']:.1f} mm (before its last training), final loss "
                f"{last['final_loss']:.4g}"
            )
        return (
            f"{self.path}: {self.name}: {detail}, {result.wall_time:.0f} s; checkpoint {self.checkpoint} "
            f"(sha256 {self.sha256[:12]}...)"
        )


def train_controller(
    session,
    checkpoint_path,
    config: ControllerConfig | None = None,
    *,
    method="dagger",
    training: TrainingConfig | None = None,
    distillation: DistillationConfig | None = None,
    expert: ExpertConfig | None = None,
    reference=None,
    resume=False,
    name=CONTROLLER_NAME,
    replace=False,
    progress=False,
) -> TrainControllerResult:
    """Train the MIMIC network to imitate the inverse-dynamics reference; save its checkpoint;
    append a ControllerNetwork (with the training log in its ``training`` attribute).

    Args:
        session: a :class:`~mimic_nwb.session.Session` opened with mode ``"a"``, or a session path.
        checkpoint_path: where the checkpoint is saved (.npz; with ``"dagger"`` after every
            iteration, so an interrupted run can be resumed).
        config: the network's sizes (:class:`~mimic_nwb.controller.ControllerConfig`; default the paper's).
        method: ``"dagger"`` (default): distil the tracking expert on the states the network
            visits (:mod:`mimic_nwb.simulate.distill`); ``"supervised"``: fit the inverse-dynamics
            controls on the reference states only (the earlier baseline, which does not close the loop).
        training: for ``"supervised"``, the TrainingConfig; for ``"dagger"``, when given, it
            replaces the distillation's optimisation settings and its ``steps`` become the steps
            per iteration.
        distillation: DistillationConfig (``"dagger"``; default ``DistillationConfig()``).
        expert: ExpertConfig of the teacher (``"dagger"``; default ``ExpertConfig()``).
        reference: the SimulationRollout of mode inverse_dynamics whose poses, velocities and
            activations are the reference (default: the session's only one).
        resume: continue from the checkpoint at ``checkpoint_path`` (its weights, normalisation
            and iteration count) instead of starting afresh.
        name: the ControllerNetwork's name; ``replace`` replaces one of that name.
        progress: a progress bar (tqdm, on stderr) over the iterations or optimiser steps.

    The reference is checked at the append: the ControllerNetwork never links to (or names) a
    rollout replaced while the network trained. Returns a :class:`TrainControllerResult`.
    """
    if method not in ("dagger", "supervised"):
        raise InputError(f"method: expected 'dagger' or 'supervised', got {method!r}")
    checkpoint_path = Path(checkpoint_path)
    with opened(session) as session:
        path = session.path
        if not replace:
            _check_free(session, [name])
        rollout = _inverse_dynamics_rollout(session, reference)
        reference_path = f"processing/{RESULTS_MODULE}/{rollout.name}"
        inputs = session.object_ids(rollout)
        model = compile_body_model(rollout.body_model)
        tracked = _reference_from_rollout(rollout, 1.0 / rollout.control_timestep)
        controls = np.asarray(rollout.actuator_controls.data[:])
        initial = None
        if resume:
            try:
                initial = load_checkpoint(checkpoint_path)
            except (ValueError, OSError) as error:
                raise InputError(f"{checkpoint_path}: cannot resume: {error}") from None
        if method == "supervised":
            window = config.observation.reference_window if config else 5
            data = build_training_set(model, tracked, controls, reference_window=window)
            bar, report = _progress_bar(progress, "training", "step")
            try:
                result = fit_controller(data, config, training, initial=initial, progress=report)
            finally:
                bar.close()
            parameters = {"method": method, "training": asdict(training) if training else None}
        else:
            distillation = distillation or DistillationConfig()
            if training is not None:
                distillation = replace_fields(distillation, training=training, steps_per_iteration=training.steps)
            expert_config = expert or ExpertConfig()
            try:
                teacher = TrackingExpert(model, tracked, expert_config)
            except ValueError as error:
                raise InputError(f"{path}: {error}") from None
            bar, report = _progress_bar(progress, "DAgger", "iteration", total=distillation.iterations)

            def iteration(entry, checkpoint):
                save_checkpoint(checkpoint_path, checkpoint)  # resumable after every iteration
                report(entry)

            try:
                result = distill_controller(
                    model, tracked, teacher, config, distillation, initial=initial, on_iteration=iteration
                )
            except ValueError as error:
                raise InputError(f"{path}: {error}") from None
            finally:
                bar.close()
            parameters = {
                "method": method,
                "distillation": distillation.to_dict(),
                "expert": expert_config.to_dict(),
                "resumed": bool(resume),
            }
        sha = save_checkpoint(checkpoint_path, result.checkpoint)
        with session.append(replace=[name] if replace else (), inputs=inputs) as s:
            s.check_new(name)
            s.add(
                checkpoint_to_nwb(result.checkpoint, name),
                parameters={**parameters, "inverse_dynamics": reference_path, "checkpoint": str(checkpoint_path)},
            )
    return TrainControllerResult(
        path=path,
        name=f"processing/{RESULTS_MODULE}/{name}",
        checkpoint=checkpoint_path,
        sha256=sha,
        method=method,
        reference=reference_path,
        result=result,
    )


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
            bar.set_postfix(
                median=f"{entry['median_episode_frames']:.0f} fr",
                error=f"{1000 * entry['mean_total_error_m']:.1f} mm",
                loss=f"{entry['final_loss']:.3g}",
            )
        else:
            step, steps, loss = args
            bar.total = steps
            bar.n = step
            bar.set_postfix(loss=f"{loss:.3g}")
            bar.refresh()

    return bar, report


def _tracking_series(result, timing):
    """The rollout's per-frame tracking measures as a NamedColumnSeries (columns with their units)."""
    from .tracking import TRACKING_COLUMNS

    units = [TRACKING_UNITS[c] for c in TRACKING_COLUMNS]
    return ndx_mimic.NamedColumnSeries(
        name="tracking_errors",
        data=compressed(result.tracking),
        unit="mixed",
        column_names=list(TRACKING_COLUMNS),
        column_units=units,
        description=(
            "Tracking of the reference by each simulated state at its frame (before any restart there): total and "
            "pose (rigidly aligned, no scaling) keypoint-site error, body error of the keypoint-carrying bodies "
            "(termination), dm_control's termination metric, track-mjx's distances and termination rule. NaN on "
            "the first frame (not simulated)."
        ),
        **timing,
    )


def episode_lengths(rollout) -> np.ndarray:
    """(E,) lengths in frames (control steps) of the episodes of a stored SimulationRollout, from
    its episodes table: what ``tracking.survival_curve`` takes."""
    table = rollout.episodes
    start = np.asarray(table["start_time"].data[:], dtype=float)
    stop = np.asarray(table["stop_time"].data[:], dtype=float)
    return np.rint((stop - start) / rollout.control_timestep).astype(int)


@dataclass(frozen=True, eq=False)
class SimulationStageResult:
    """What :func:`simulate` appended and computed.

    ``path`` is the session file; ``name`` the rollout's path (``processing/mimic/<name>``, a
    SimulationRollout of mode ``closed_loop``, ``open_loop`` or ``expert``); ``activations`` the
    path of its NetworkActivations (None for the expert, which has no network); ``controller`` the
    path of the ControllerNetwork that acted (the session's, or the one stored from the
    checkpoint file; None for the expert); ``reference`` the path of the inverse-dynamics rollout
    tracked; ``result`` the core's :class:`~mimic_nwb.simulate.rollout.RolloutResult` (qpos
    (T, nq), controls (T, nu), tracking (T, 8) m, episodes, every layer's activations: see there).
    """

    path: Path
    name: str
    activations: str | None
    controller: str | None
    reference: str
    result: RolloutResult

    @property
    def mode(self) -> str:
        return self.result.mode

    @property
    def mean_total_error(self) -> float:
        """Mean total keypoint error of the simulated states, metres."""
        return float(np.nanmean(self.result.total_error))

    @property
    def mean_pose_error(self) -> float:
        """Mean pose error (after rigid alignment without scaling), metres."""
        return float(np.nanmean(self.result.pose_error))

    def summary(self) -> str:
        """One line: what was appended, the episodes, the mean total and pose errors, the layers recorded."""
        appended = self.name if self.activations is None else f"{self.name} + {self.activations}"
        layers = f", {len(self.result.activations)} layers" if self.activations is not None else ""
        return f"{self.path}: {appended}: {self.result.summary()}{layers}"


def _derived_name(name, kind):
    """``<kind>_<label>`` for the rollout ``SimulationRollout_<label>`` (else ``<kind>_<name>``):
    the names of the NetworkActivations and of a controller stored from a checkpoint file."""
    return f"{kind}_{name.removeprefix('SimulationRollout_')}"


def _inverse_dynamics_rollout(session, name):
    """The SimulationRollout of mode inverse_dynamics named ``name``, or the only one (none or
    several: an InputError naming them)."""
    where = f"processing/{RESULTS_MODULE}"
    if name is not None:
        rollout = session.result(SimulationRollout, name)
        if rollout.mode != "inverse_dynamics":
            raise InputError(f"{session.path}: {where}/{name} is a {rollout.mode} rollout, not inverse dynamics")
        return rollout
    found = {n: r for n, r in session.results(SimulationRollout).items() if r.mode == "inverse_dynamics"}
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise InputError(
            f"{session.path}: no SimulationRollout of mode inverse_dynamics in {where}; "
            "run mimic-nwb simulate --mode inverse_dynamics first"
        )
    raise InputError(
        f"{session.path}: {len(found)} inverse-dynamics rollouts in {where} ({', '.join(found)}): "
        "choose one by name (reference=...)"
    )


def simulate(
    session,
    config: RolloutConfig | None = None,
    *,
    checkpoint=None,
    controller=None,
    reference=None,
    name=None,
    replace=False,
    progress=False,
) -> SimulationStageResult:
    """Imitate the inverse-dynamics reference in MuJoCo; append a SimulationRollout (and the network's activations).

    ``session`` is a :class:`~mimic_nwb.session.Session` opened with mode ``"a"`` or a session
    path; ``config`` the :class:`~mimic_nwb.simulate.rollout.RolloutConfig` (default closed loop):
    ``config.mode`` ``"closed_loop"`` / ``"open_loop"`` runs the controller network and records
    every layer, ``"expert"`` the tracking expert (no network, no activations). ``reference``
    names the SimulationRollout of mode inverse_dynamics tracked (default: the only one).
    The network is the session's ControllerNetwork named ``controller`` (default: the only one),
    or the checkpoint file ``checkpoint`` (.npz), then stored beside the rollout as
    ``ControllerNetwork_<label>``. The rollout goes to ``processing/mimic/<name>`` (default
    ``SimulationRollout_<mode>``), the activations to ``NetworkActivations_<label>`` (``label``:
    ``name`` without its ``SimulationRollout_`` prefix); ``replace`` replaces results of those
    names; ``progress`` shows a progress bar over the frames. The inputs are checked at the
    append: a rollout never links an input replaced meanwhile. Returns a :class:`SimulationStageResult`.
    """
    config = config or RolloutConfig()
    expert = config.mode == "expert"
    name = name or f"SimulationRollout_{config.mode}"
    activations_name = None if expert else _derived_name(name, "NetworkActivations")
    stored_controller = None if expert or checkpoint is None else _derived_name(name, CONTROLLER_NAME)
    names = [n for n in (name, activations_name, stored_controller) if n is not None]
    with opened(session) as session:
        path = session.path
        if not replace:
            _check_free(session, names)
        rollout_id = _inverse_dynamics_rollout(session, reference)
        model = compile_body_model(rollout_id.body_model)
        rate = 1.0 / rollout_id.control_timestep
        start = float(rollout_id.qpos.starting_time)
        tracked = _reference_from_rollout(rollout_id, rate)
        read = [rollout_id]
        ckpt = network = None
        if not expert:
            if checkpoint is None:
                network = session.result(ControllerNetwork, controller)
                ckpt = checkpoint_from_nwb(network, path)
                read.append(network)
            else:
                try:
                    ckpt = load_checkpoint(checkpoint)
                except (ValueError, OSError) as error:
                    raise InputError(f"{checkpoint}: {error}") from None
        inputs = session.object_ids(*read)
        reference_path = f"processing/{RESULTS_MODULE}/{rollout_id.name}"
        controller_path = None
        if network is not None:
            controller_path = f"processing/{RESULTS_MODULE}/{network.name}"
        elif stored_controller is not None:
            controller_path = f"processing/{RESULTS_MODULE}/{stored_controller}"
        report, close = _frame_progress(progress, config.mode.replace("_", " "))
        try:
            # per-frame outputs go to scratch files beside the session as the rollout goes
            result = run_rollout(
                model, tracked, ckpt, config, progress=report, block_frames=ROLLOUT_BLOCK_FRAMES, scratch=path.parent
            )
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None
        finally:
            close()
        with session.append(replace=names if replace else (), inputs=inputs) as s:
            for n in names:
                s.check_new(n)
            id_rollout = s.input(reference_path, inputs[reference_path])
            body_model = id_rollout.body_model
            if network is not None:
                controller_obj = s.input(controller_path, inputs[controller_path])
            elif stored_controller is not None:
                controller_obj = s.add(
                    checkpoint_to_nwb(ckpt, stored_controller), parameters={"checkpoint": str(checkpoint)}
                )
            else:
                controller_obj = None
            rollout = _rollout_to_nwb(result, name, model, body_model, id_rollout, controller_obj, rate, start)
            parameters = {**config.to_dict(), "reference": rollout_id.name}
            if expert:
                parameters["cpu_seconds"] = float(result.cpu_time)
            else:
                parameters["controller_sha256"] = result.controller_sha256
            s.add(rollout, parameters=parameters)
            if not expert:
                s.add(
                    _activations_to_nwb(result, activations_name, body_model, controller_obj, rollout, rate, start),
                    parameters={"dtype": "int16", "rollout": name},
                )
    return SimulationStageResult(
        path=path,
        name=f"processing/{RESULTS_MODULE}/{name}",
        activations=None if expert else f"processing/{RESULTS_MODULE}/{activations_name}",
        controller=controller_path,
        reference=reference_path,
        result=result,
    )


def _rollout_to_nwb(result, name, model, body_model, id_rollout, controller, rate, start):
    """The SimulationRollout of a closed-loop, open-loop or expert rollout, on the reference's clock."""
    expert = result.mode == "expert"
    timing = dict(rate=rate, starting_time=start + result.frames[0] / rate)
    terms = sorted(result.reward_terms)
    episodes = result.episodes
    actor = "The expert's controls." if expert else "Controller actions (controls)."
    return ndx_mimic.SimulationRollout(
        name=name,
        mode=result.mode,
        physics_timestep=result.timestep,
        control_timestep=1.0 / rate,
        seed=int(result.config.expert.seed if expert else result.seed),
        qpos=_joint_series("qpos", result.qpos, body_model, "qpos", _units(model, "qpos"), timing, "Simulated poses."),
        qvel=_joint_series(
            "qvel", result.qvel, body_model, "qvel", _units(model, "qvel"), timing, "Simulated velocities."
        ),
        actuator_controls=_joint_series(
            "actuator_controls", result.actuator_controls, body_model, "actuator", None, timing, actor
        ),
        actuator_activations=_joint_series(
            "actuator_activations",
            result.actuator_activations,
            body_model,
            "actuator",
            None,
            timing,
            "Activation states (act).",
        ),
        actuator_forces=_joint_series(
            "actuator_forces",
            result.actuator_forces,
            body_model,
            "actuator",
            ["newton-meters"] * model.nu,
            timing,
            "Actuator forces.",
        ),
        reward=TimeSeries(
            name="reward",
            data=result.reward,
            unit="dimensionless",
            description="Total reward (track-mjx's terms).",
            **timing,
        ),
        reward_terms=ndx_mimic.NamedColumnSeries(
            name="reward_terms",
            data=np.stack([result.reward_terms[t] for t in terms], axis=1),
            unit="dimensionless",
            column_names=terms,
            description="Reward terms (track-mjx).",
            **timing,
        ),
        tracking_errors=_tracking_series(result, timing),
        episodes=_episodes(
            episodes.start_frame,
            episodes.stop_frame,
            lambda f: start + f / rate,
            episodes.termination,
            episodes.episode_return,
        ),
        body_model=body_model,
        reference=id_rollout.reference,
        controller=controller,
    )


def _activations_to_nwb(result, name, body_model, controller, rollout, rate, start):
    """The NetworkActivations of a network rollout: every layer (int16 with a scale), latent resampling."""
    timing = dict(rate=rate, starting_time=start + result.frames[0] / rate)
    resampling = None
    if result.latent_resampling is not None:
        r = result.latent_resampling
        resampling = ndx_mimic.LatentResampling(
            name="latent_resampling",
            num_samples=int(r.n_samples),
            seed=int(result.seed),
            action_std=ndx_mimic.NamedColumnSeries(
                name="action_std",
                data=stored(r.action_std),
                unit="dimensionless",
                column_names=list(body_model.actuator_names[:]),
                description="Action std over latent samples.",
                **timing,
            ),
            latent_std=ndx_mimic.NamedColumnSeries(
                name="latent_std",
                data=stored(r.latent_std),
                unit="dimensionless",
                column_names=[f"latent_{i}" for i in range(r.latent_std.shape[1])],
                description="Latent std over samples.",
                **timing,
            ),
        )
    layers = [
        ndx_mimic.LayerActivations(
            name=layer,
            layer_kind=result.layer_kinds[layer],
            **quantized(values, f"{result.layer_kinds[layer]} layer '{layer}'."),
            **timing,
        )
        for layer, values in result.activations.items()
    ]
    return ndx_mimic.NetworkActivations(
        name=name, layer_activations=layers, latent_resampling=resampling, controller=controller, rollout=rollout
    )
