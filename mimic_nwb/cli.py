"""The ``mimic-nwb`` command: one subcommand per pipeline stage.

Each subcommand only parses its arguments and calls the stage's NWB adapter. Bad input ends
with one line ``mimic-nwb: error: ...`` on stderr and exit code 2, and changes nothing on disk.
"""

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .errors import InputError


def _metadata_from_args(args):
    from .create import SessionMetadata, TetrodeDrive

    if args.metadata:
        metadata = SessionMetadata.from_yaml(args.metadata)
        return metadata
    drives = []
    for spec in args.drive or []:
        parts = spec.split(":")
        if len(parts) != 3 or not parts[2].isdigit():
            raise InputError(f"--drive {spec!r}: expected NAME:BRAIN_REGION:NUM_TETRODES, e.g. drive0:DLS:16")
        drives.append(TetrodeDrive(name=parts[0], brain_region=parts[1], num_tetrodes=int(parts[2])))
    values = {
        "subject_id": args.subject_id,
        "species": args.species,
        "sex": args.sex,
        "age": args.age,
        "date_of_birth": args.date_of_birth,
        "session_id": args.session_id,
        "session_start_time": args.start_time,
        "lab": args.lab,
        "institution": args.institution,
        "experimenter": args.experimenter or [],
        "session_description": args.description,
        "drives": drives,
    }
    return SessionMetadata.from_dict({k: v for k, v in values.items() if v is not None}, source="flags")


def cmd_create(args):
    from .create import create_session

    result = create_session(args.session, _metadata_from_args(args), overwrite=args.overwrite)
    print(result.summary())


def cmd_import_keypoints(args):
    from .importers.keypoints import KeypointImportConfig, import_keypoints

    try:
        config = KeypointImportConfig(
            skeleton=args.skeleton,
            keypoint_names=args.keypoint_names,
            units=args.units,
            animal=args.animal,
            track=args.track,
            rate=args.rate,
            timestamps=args.timestamps,
            starting_time=args.starting_time,
            reference_frame=args.reference_frame,
            videos=tuple(args.video or ()),
        )
    except ValueError as error:
        raise InputError(str(error)) from None
    result = import_keypoints(args.session, args.source, config, name=args.name, replace=args.replace)
    print(result.summary())


def cmd_import_units(args):
    from .importers.units import UnitImportConfig, import_units

    try:
        config = UnitImportConfig(
            sampling_rate=args.sampling_rate,
            unit_table=args.unit_table,
            keep=tuple(label.strip() for label in args.keep.split(",")) if args.keep else None,
            segment_index=args.segment_index,
            session_end=args.session_end,
        )
    except ValueError as error:
        raise InputError(str(error)) from None
    result = import_units(args.session, args.source, config, replace=args.replace)
    print(result.summary())


def cmd_import_labels(args):
    from .importers.labels import LabelImportConfig, import_labels

    try:
        config = LabelImportConfig(
            rate=args.rate, timestamps=args.timestamps, starting_time=args.starting_time, session_end=args.session_end
        )
    except ValueError as error:
        raise InputError(str(error)) from None
    result = import_labels(args.session, args.source, config, name=args.name, replace=args.replace)
    print(result.summary())


def cmd_import_foreign(args):
    from .importers.mimic_h5 import MimicH5ImportConfig, import_mimic_h5
    from .importers.stac_mjx import StacMjxImportConfig, import_stac_mjx
    from .importers.track_mjx import TrackMjxImportConfig, import_track_mjx

    layer_kinds = {}
    for spec in args.layer_kind or []:
        layer, _, kind = spec.partition("=")
        if not layer or not kind:
            raise InputError(f"--layer-kind {spec!r}: expected NAME=KIND, e.g. intention=latent_sample")
        layer_kinds[layer] = kind
    if layer_kinds and args.format != "track-mjx":
        raise InputError(f"--layer-kind: only for --format track-mjx, not {args.format}")
    rate = {} if args.rate is None else {"rate": args.rate}
    try:
        if args.format == "stac-mjx":
            stage, config = import_stac_mjx, StacMjxImportConfig(**rate)
        elif args.format == "track-mjx":
            stage, config = import_track_mjx, TrackMjxImportConfig(**rate, layer_kinds=layer_kinds)
        else:
            stage, config = import_mimic_h5, MimicH5ImportConfig(**rate)
    except ValueError as error:
        raise InputError(str(error)) from None
    names = {} if args.name is None else {"name": args.name}
    result = stage(args.session, args.source, config, replace=args.replace, **names)
    print(result.summary())


def cmd_stac(args):
    from .stac import StacConfig
    from .stac.nwb import stac

    settings = {}
    if args.up:
        try:
            settings["up_direction"] = tuple(float(v) for v in args.up.split(","))
        except ValueError:
            raise InputError(f"--up {args.up!r}: expected three numbers, e.g. 0,0,1") from None
    for field in (
        "n_calibration_frames",
        "n_workers",
        "smoothness_weight",
        "floor_height",
        "min_keypoints",
        "floor_weight",
        "contact_weight",
        "max_missing_share",
    ):
        if getattr(args, field) is not None:
            settings[field] = getattr(args, field)
    try:
        config = StacConfig(**settings)
    except ValueError as error:
        raise InputError(str(error)) from None
    result = stac(
        args.session,
        config,
        keypoints=args.keypoints,
        site_map=args.site_map,
        mjcf=args.mjcf,
        scale=args.scale,
        offsets_from=args.offsets_from,
        name=args.name,
        replace=args.replace,
        progress=not args.no_progress,
    )
    print(result.summary())


def cmd_encode(args):
    from .encoding import EncodingConfig
    from .encoding.nwb import encode

    settings = {
        "bin_size": args.bin_size,
        "n_folds": args.folds,
        "chunk_duration": args.chunk_duration,
        "alpha": args.alpha,
        "l1_wt": args.l1_ratio,
    }
    if args.lags:
        try:
            settings["lags"] = tuple(float(v) for v in args.lags.split(","))
        except ValueError:
            raise InputError(f"--lags {args.lags!r}: expected seconds separated by commas, e.g. -0.2,0,0.2") from None
    if args.pca_variance is not None:
        settings["pca_variance"] = None if args.pca_variance >= 1 else args.pca_variance
    try:
        config = EncodingConfig(**settings)
    except ValueError as error:
        raise InputError(str(error)) from None
    result = encode(
        args.session,
        args.feature_set,
        config,
        counts=args.counts,
        q_threshold=args.q_threshold,
        name=args.name,
        replace=args.replace,
        progress=not args.no_progress,
    )
    print(result.summary())


def cmd_rsa(args):
    from .rsa.nwb import RsaConfig, rsa

    try:
        config = RsaConfig(
            bin_size=args.bin_size,
            n_folds=args.folds,
            chunk_duration=args.chunk_duration,
            n_permutations=args.permutations,
        )
    except ValueError as error:
        raise InputError(str(error)) from None
    result = rsa(args.session, args.feature_set, config, labels=args.labels, name=args.name, replace=args.replace)
    print(result.summary())


def cmd_simulate(args):
    from .simulate import ExpertConfig, InverseDynamicsConfig, RolloutConfig
    from .simulate.nwb import inverse_dynamics, simulate

    # --name is the label: the results are SimulationRollout_<label> (+ NetworkActivations_<label>)
    name = f"SimulationRollout_{args.name or args.mode}"
    try:
        if args.mode == "inverse_dynamics":
            config = InverseDynamicsConfig(contacts=args.contacts, n_workers=args.workers)
        else:
            expert = ExpertConfig(n_samples=args.samples, horizon=args.horizon, seed=args.seed)
            config = RolloutConfig(
                mode=args.mode,
                n_frames=args.frames,
                termination_error=args.termination_error,
                resample_latent=args.latent_samples > 0,
                latent_samples=max(args.latent_samples, 2),
                seed=args.seed,
                expert=expert,
            )
    except ValueError as error:
        raise InputError(str(error)) from None
    if args.mode == "inverse_dynamics":
        result = inverse_dynamics(
            args.session,
            config,
            registration=args.registration,
            name=name,
            replace=args.replace,
            progress=not args.no_progress,
        )
    else:
        result = simulate(
            args.session,
            config,
            checkpoint=args.checkpoint,
            controller=args.controller,
            reference=args.reference,
            name=name,
            replace=args.replace,
            progress=not args.no_progress,
        )
    print(result.summary())


def cmd_train_controller(args):
    from dataclasses import replace

    from .controller import ControllerConfig, TrainingConfig
    from .simulate.distill import DistillationConfig
    from .simulate.nwb import train_controller
    from .simulate.tracking import TerminationConfig

    try:
        config = ControllerConfig(
            encoder_sizes=tuple(args.encoder_sizes),
            decoder=args.decoder,
            decoder_sizes=tuple(args.decoder_sizes),
            kl_weight=args.kl_weight,
        )
        training = distillation = None
        if args.method == "supervised":
            training = TrainingConfig(steps=args.steps or 1500, seed=args.seed)
        else:
            defaults = DistillationConfig()
            distillation = DistillationConfig(
                iterations=args.iterations,
                expert_noise=args.expert_noise,
                seed=args.seed,
                student_passes=args.student_passes,
                training=replace(defaults.training, sequence_length=args.sequence_length),
                steps_per_iteration=args.steps or defaults.steps_per_iteration,
                termination=TerminationConfig(threshold=args.termination_threshold),
                start_frame=args.frames[0] if args.frames else 0,
                stop_frame=args.frames[1] if args.frames else None,
            )
    except ValueError as error:
        raise InputError(str(error)) from None
    result = train_controller(
        args.session,
        args.checkpoint,
        config,
        method=args.method,
        training=training,
        distillation=distillation,
        reference=args.reference,
        resume=args.resume,
        name=args.name,
        replace=args.replace,
        progress=not args.no_progress,
    )
    print(result.summary())


def cmd_inspect(args):
    from .inspection import inspect_session

    result = inspect_session(args.session, run_inspector=not args.no_inspector)
    print(result.text)
    return 0 if result.ok else 1


def cmd_render(args):
    from .render import RenderConfig, RenderingError, render

    try:
        config = RenderConfig(frames=args.frames, width=args.width, height=args.height, fps=args.fps)
    except ValueError as error:
        raise InputError(str(error)) from None
    try:
        result = render(
            args.session,
            args.out,
            config,
            registration=args.registration,
            rollout=args.rollout,
            progress=not args.no_progress,
        )
    except RenderingError as error:
        print(f"mimic-nwb: error: {error}", file=sys.stderr)
        return 1
    print(result.summary())


def cmd_report(args):
    from .report import write_report

    print(write_report(args.session, args.out))


def cmd_demo(args):
    from .demo import run_demo

    _, ok = run_demo(args.outdir, fresh=args.fresh, frames=args.frames)
    return 0 if ok else 1


def cmd_publish(args):
    from .dandi import publish

    result = publish(
        args.sessions,
        args.dandiset,
        instance=args.instance,
        dandiset_dir=args.dandiset_dir,
        files_mode=args.files_mode,
        existing=args.existing,
        upload_files=not args.validate_only,
    )
    print(result.summary())


def cmd_download(args):
    from .dandi import download

    paths = download(
        args.dandiset,
        args.output_dir,
        path=args.path,
        instance=args.instance,
        version=args.version,
        existing=args.existing,
    )
    print(f"{len(paths)} asset(s) in {args.output_dir}")
    for path in paths:
        print(f"  {path}")


def cmd_batch(args):
    from .batch import run_batch

    result = run_batch(
        args.source,
        args.stages,
        options=args.option or [],
        scheduler=args.scheduler,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        progress=not args.no_progress,
    )
    print(result.summary())
    return 0 if result.ok else 2


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mimic-nwb",
        description="MIMIC virtual-rodent pipeline over ndx-mimic NWB session files.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", help="create a session file from a metadata YAML or flags")
    create.add_argument("session", type=Path, help="NWB file to create")
    create.add_argument("--metadata", type=Path, help="metadata YAML (fields of mimic_nwb.create.SessionMetadata)")
    create.add_argument("--subject-id")
    create.add_argument("--species", help="Latin binomial or NCBITaxon URL, e.g. 'Rattus norvegicus'")
    create.add_argument("--sex", help="M, F, U or O")
    create.add_argument("--age", help="ISO 8601 duration, e.g. P90D")
    create.add_argument("--date-of-birth", help="ISO 8601 date-time with time zone")
    create.add_argument("--session-id")
    create.add_argument("--start-time", help="session start, ISO 8601 with time zone")
    create.add_argument("--lab")
    create.add_argument("--institution")
    create.add_argument("--experimenter", action="append", help="'Last, First' (repeatable)")
    create.add_argument("--description", help="session description")
    create.add_argument("--drive", action="append", help="tetrode drive NAME:BRAIN_REGION:NUM_TETRODES (repeatable)")
    create.add_argument("--overwrite", action="store_true", help="replace an existing file")
    create.set_defaults(func=cmd_create)

    keypoints = commands.add_parser(
        "import-keypoints",
        help="import 3D keypoints (DANNCE .mat, SLEAP 3D .h5, Anipose 3D .csv, or an NWB file with ndx-pose) into a session",
    )
    keypoints.add_argument("session", type=Path)
    keypoints.add_argument(
        "source",
        type=Path,
        help="DANNCE save_data_*.mat, SLEAP analysis .h5 with 3D points, triangulated SLEAP tracks .h5 "
        "(sleap-anipose points3d.h5), Anipose pose-3d .csv, or an NWB file with ndx-pose",
    )
    keypoints.add_argument(
        "--skeleton", help="skeleton .mat (joint_names, joints_idx) or a built-in name: rat23, mouse22"
    )
    keypoints.add_argument("--keypoint-names", help="keypoint names in the file's order: NAME,NAME,... or a text file")
    keypoints.add_argument("--track", help="track (index or name) of a multi-track SLEAP file")
    keypoints.add_argument(
        "--rate",
        type=float,
        help="frame rate in Hz; the camera rate when the file numbers its frames (DANNCE sampleID, Anipose fnum)",
    )
    keypoints.add_argument("--timestamps", type=Path, help="per-frame times on the session clock (.npy or text, s)")
    keypoints.add_argument("--starting-time", type=float, default=0.0, help="time of the first frame, s (with --rate)")
    keypoints.add_argument("--animal", type=int, help="animal index of multi-animal predictions (N, A, 3, K)")
    keypoints.add_argument(
        "--units",
        choices=["mm", "cm", "m"],
        help="units of the source positions, overriding what the file declares (default: mm, or an NWB file's own)",
    )
    keypoints.add_argument("--reference-frame", help="description of the world frame of the keypoints")
    keypoints.add_argument("--video", action="append", help="path of a source video (repeatable)")
    keypoints.add_argument("--name", default="PoseEstimation", help="name of the PoseEstimation in processing/behavior")
    keypoints.add_argument("--replace", action="store_true", help="replace keypoints of the same name")
    keypoints.set_defaults(func=cmd_import_keypoints)

    units = commands.add_parser(
        "import-units", help="import sorted units (.npz of spike times, phy folder, saved SpikeInterface sorting)"
    )
    units.add_argument("session", type=Path)
    units.add_argument(
        "source", type=Path, help=".npz (one array of spike times in s per unit), phy folder, or SpikeInterface folder"
    )
    units.add_argument(
        "--sampling-rate", type=float, help="recording sampling rate, Hz (for .npz; phy reads params.py)"
    )
    units.add_argument(
        "--unit-table", type=Path, help="CSV/TSV: unit, and any of electrode_group, brain_region, cell_type, quality"
    )
    units.add_argument("--keep", help="phy cluster labels to import, comma-separated (default: good,mua)")
    units.add_argument("--segment-index", type=int, default=0, help="segment of a multi-segment SpikeInterface sorting")
    units.add_argument(
        "--session-end", type=float, help="end of the recording, s (default: end of the session's keypoints, if any)"
    )
    units.add_argument("--replace", action="store_true", help="replace the units already in the session")
    units.set_defaults(func=cmd_import_units)

    labels = commands.add_parser(
        "import-labels", help="import behaviour bouts (CSV/TSV, or per-frame labels .npy/.npz)"
    )
    labels.add_argument("session", type=Path)
    labels.add_argument(
        "source", type=Path, help="CSV/TSV: start,stop,label[,cluster_id] in s; or .npy/.npz per-frame labels"
    )
    labels.add_argument("--rate", type=float, help="frame rate of per-frame labels, Hz (default: the keypoints' clock)")
    labels.add_argument("--timestamps", type=Path, help="per-frame times of per-frame labels (.npy or text, s)")
    labels.add_argument("--starting-time", type=float, default=0.0, help="time of the first frame, s (with --rate)")
    labels.add_argument(
        "--session-end", type=float, help="end of the session, s (default: bouts must lie within the keypoints' range)"
    )
    labels.add_argument("--name", default="behavior_labels", help="name of the table in /intervals")
    labels.add_argument("--replace", action="store_true", help="replace a table of the same name")
    labels.set_defaults(func=cmd_import_labels)

    foreign = commands.add_parser(
        "import-foreign", help="import another tool's output (stac-mjx .h5, track-mjx rollout .h5, MIMIC session .h5)"
    )
    foreign.add_argument("session", type=Path)
    foreign.add_argument(
        "source",
        type=Path,
        help="the tool's HDF5 output (layouts: mimic_nwb.importers.stac_mjx, .track_mjx, .mimic_h5)",
    )
    foreign.add_argument("--format", required=True, choices=["stac-mjx", "track-mjx", "mimic-h5"])
    foreign.add_argument(
        "--rate",
        type=float,
        help="Hz: frame rate (stac-mjx without session keypoints; mimic-h5, default 50), control rate (track-mjx)",
    )
    foreign.add_argument(
        "--name",
        help="StacRegistration name (stac-mjx, mimic-h5), or suffix of the track-mjx results (default track_mjx)",
    )
    foreign.add_argument(
        "--layer-kind", action="append", help="track-mjx activation layer kind NAME=KIND, e.g. intention=latent_sample"
    )
    foreign.add_argument("--replace", action="store_true", help="replace results of the same names")
    foreign.set_defaults(func=cmd_import_foreign)

    stac = commands.add_parser("stac", help="register the body model to the session's 3D keypoints (STAC)")
    stac.add_argument("session", type=Path)
    stac.add_argument("--site-map", type=Path, help="keypoint site map YAML (default: built-in for rat23)")
    stac.add_argument("--mjcf", type=Path, help="MJCF of the body (default: the dm_control rodent)")
    stac.add_argument("--scale", type=float, help="model scale factor (default: the site map's)")
    stac.add_argument("--offsets-from", type=Path, help="session whose fitted offsets to reuse (skips calibration)")
    stac.add_argument(
        "--calibration-frames", dest="n_calibration_frames", type=int, help="frames used to calibrate offsets"
    )
    stac.add_argument("--workers", dest="n_workers", type=int, help="processes (default: all cores)")
    stac.add_argument("--smoothness", dest="smoothness_weight", type=float, help="temporal smoothness weight")
    stac.add_argument("--min-keypoints", type=int, help="frames with fewer observed keypoints are not fitted")
    stac.add_argument("--up", help="up direction in the keypoints' frame, x,y,z (default: estimated)")
    stac.add_argument("--floor-height", type=float, help="floor height along up, m (default: estimated)")
    stac.add_argument(
        "--floor-weight",
        type=float,
        help="weight of the floor term, m^2 per m^2 of depth below the floor (default 100; 0 = off)",
    )
    stac.add_argument("--contact-weight", type=float, help="weight of the self-contact term (default 30; 0 = off)")
    stac.add_argument(
        "--max-missing-share",
        type=float,
        help="keypoints missing in more than this share of frames are excluded (default 0.5)",
    )
    stac.add_argument("--keypoints", default=None, help="PoseEstimation in processing/behavior (default: the only one)")
    stac.add_argument("--name", default="StacRegistration", help="name of the result in processing/mimic")
    stac.add_argument("--replace", action="store_true", help="replace an existing registration and body model")
    stac.add_argument("--no-progress", action="store_true", help="no progress bar")
    stac.set_defaults(func=cmd_stac)

    encode = commands.add_parser("encode", help="Poisson GLM encoding models of the units on feature sets")
    encode.add_argument("session", type=Path)
    encode.add_argument("--feature-set", action="append", help="feature set (repeatable; default: all available)")
    encode.add_argument("--bin-size", type=float, default=0.02, help="spike-count bin, s (default 0.02)")
    encode.add_argument("--lags", help="lags in s, comma-separated (default -1.0 ... 0.3 step 0.1)")
    encode.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    encode.add_argument("--chunk-duration", type=float, default=4.0, help="contiguous CV chunk, s (default 4)")
    encode.add_argument("--pca-variance", type=float, help="variance kept by PCA (default 0.9; 1 = no PCA)")
    encode.add_argument("--alpha", type=float, default=1e-4, help="penalty strength (default 1e-4)")
    encode.add_argument("--l1-ratio", type=float, default=0.0, help="elastic-net L1 share (default 0: ridge)")
    encode.add_argument("--q-threshold", type=float, default=0.05, help="BH q-value threshold (default 0.05)")
    encode.add_argument("--counts", help="use this BinnedSpikeCounts instead of the Units table")
    encode.add_argument("--name", default="EncodingResults", help="name of the result in processing/mimic")
    encode.add_argument("--replace", action="store_true", help="replace an existing result of that name")
    encode.add_argument("--no-progress", action="store_true", help="no progress bar")
    encode.set_defaults(func=cmd_encode)

    rsa = commands.add_parser("rsa", help="RDMs of neural populations and feature sets over behaviours, compared")
    rsa.add_argument("session", type=Path)
    rsa.add_argument("--feature-set", action="append", help="feature set (repeatable; default: all available)")
    rsa.add_argument("--labels", default="behavior_labels", help="behaviour bouts in /intervals")
    rsa.add_argument("--bin-size", type=float, default=0.02, help="bin, s (default 0.02)")
    rsa.add_argument("--folds", type=int, default=5, help="partitions for crossnobis (default 5)")
    rsa.add_argument("--chunk-duration", type=float, default=4.0, help="contiguous chunk per partition, s")
    rsa.add_argument("--permutations", type=int, default=1000, help="condition-label permutations for p-values")
    rsa.add_argument("--name", default="RepresentationalSimilarity", help="name of the result in processing/mimic")
    rsa.add_argument("--replace", action="store_true", help="replace an existing result of that name")
    rsa.set_defaults(func=cmd_rsa)

    simulate = commands.add_parser(
        "simulate", help="inverse-dynamics replay, controller rollouts (closed/open loop), or the tracking expert"
    )
    simulate.add_argument("session", type=Path)
    simulate.add_argument(
        "--mode", default="closed_loop", choices=["inverse_dynamics", "closed_loop", "open_loop", "expert"]
    )
    simulate.add_argument("--registration", help="StacRegistration to replay (inverse dynamics; default: the only one)")
    simulate.add_argument("--reference", help="inverse-dynamics SimulationRollout to imitate (default: the only one)")
    simulate.add_argument("--contacts", action="store_true", help="keep contacts in inverse dynamics (default off)")
    simulate.add_argument(
        "--workers", type=int, default=1, help="inverse dynamics: processes computing blocks of frames (default 1)"
    )
    simulate.add_argument("--checkpoint", type=Path, help="controller checkpoint (.npz; default: the session's)")
    simulate.add_argument("--controller", help="ControllerNetwork in the session (default: the only one)")
    simulate.add_argument("--frames", type=int, help="reference frames to run (default: all)")
    simulate.add_argument(
        "--termination-error",
        type=float,
        default=0.03,
        help="error of the keypoint-carrying bodies ending an episode, m",
    )
    simulate.add_argument(
        "--samples", type=int, default=0, help="expert: predictive-sampling candidates per step (0: off; e.g. 16)"
    )
    simulate.add_argument("--horizon", type=float, default=0.2, help="expert: predictive-sampling horizon, s")
    simulate.add_argument("--latent-samples", type=int, default=0, help="latent resampling per step (0: off; paper 50)")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--name", help="label of the results (default: the mode)")
    simulate.add_argument("--replace", action="store_true", help="replace existing results of that name")
    simulate.add_argument("--no-progress", action="store_true", help="no progress bar")
    simulate.set_defaults(func=cmd_simulate)

    train = commands.add_parser(
        "train-controller",
        help="distil the tracking expert into the MIMIC network (DAgger), or fit the inverse-dynamics controls",
    )
    train.add_argument("session", type=Path)
    train.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="where to save the checkpoint (.npz; saved after every DAgger iteration)",
    )
    train.add_argument(
        "--method",
        default="dagger",
        choices=["dagger", "supervised"],
        help="dagger (default): the network learns from the expert on the states it visits itself; "
        "supervised: the inverse-dynamics controls on the reference only (does not close the loop)",
    )
    train.add_argument("--reference", help="inverse-dynamics SimulationRollout to imitate (default: the only one)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint at --checkpoint (weights, normalisation, iteration count)",
    )
    train.add_argument("--iterations", type=int, default=3, help="DAgger iterations (default 3)")
    train.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimiser steps: per DAgger iteration (default 2000), or in all (supervised, default 1500)",
    )
    train.add_argument(
        "--student-passes",
        type=int,
        default=2,
        help="closed-loop passes of the network over the reference per DAgger iteration (default 2)",
    )
    train.add_argument("--sequence-length", type=int, default=8, help="frames per training window (DAgger; default 8)")
    train.add_argument(
        "--expert-noise",
        type=float,
        default=0.02,
        help="DART noise on the expert's controls, control units, for an actuator of average weight (default 0.02)",
    )
    train.add_argument(
        "--termination-threshold", type=float, default=0.03, help="body error (m) that ends an episode (default 0.03)"
    )
    train.add_argument(
        "--frames",
        type=int,
        nargs=2,
        metavar=("START", "STOP"),
        help="train on reference frames START..STOP-1 only (DAgger)",
    )
    train.add_argument(
        "--encoder-sizes", type=int, nargs="+", default=[512, 512], help="encoder layer sizes (default 512 512)"
    )
    train.add_argument("--decoder", default="lstm", choices=["lstm", "mlp"], help="decoder kind (default lstm)")
    train.add_argument(
        "--decoder-sizes", type=int, nargs="+", default=[128, 128], help="decoder layer sizes (default 128 128)"
    )
    train.add_argument(
        "--kl-weight",
        type=float,
        default=1e-6,
        help="weight of the latent's KL term (default 1e-6: the distillation's errors are small, "
        "a larger weight drowns them)",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--name", default="ControllerNetwork", help="name of the ControllerNetwork")
    train.add_argument("--replace", action="store_true", help="replace an existing ControllerNetwork of that name")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train_controller)

    inspect = commands.add_parser(
        "inspect",
        help="read every dataset once (a damaged chunk: exit 1), summarise, validate and inspect a session file",
    )
    inspect.add_argument("session", type=Path)
    inspect.add_argument("--no-inspector", action="store_true", help="skip nwbinspector (faster)")
    inspect.set_defaults(func=cmd_inspect)

    render = commands.add_parser(
        "render", help="render the registered model with its keypoints, or a rollout beside its reference (PNG, MP4)"
    )
    render.add_argument("session", type=Path)
    render.add_argument(
        "--out", type=Path, required=True, help="still.png (one frame), video.mp4, or a folder (one PNG per frame)"
    )
    render.add_argument(
        "--registration", help="StacRegistration to show (default: the first; with --rollout: its reference)"
    )
    render.add_argument("--rollout", help="SimulationRollout to show beside its reference")
    render.add_argument(
        "--frames", help="START:STOP (STOP exclusive) or one frame N; default: all (a still: the first)"
    )
    render.add_argument("--width", type=int, default=640, help="picture width in pixels (default 640)")
    render.add_argument("--height", type=int, default=480, help="picture height in pixels (default 480)")
    render.add_argument("--fps", type=float, help="video frame rate (default: the data's, real time)")
    render.add_argument("--no-progress", action="store_true", help="no progress bar")
    render.set_defaults(func=cmd_render)

    report = commands.add_parser("report", help="one self-contained HTML page with figures of every stage in a session")
    report.add_argument("session", type=Path)
    report.add_argument("--out", type=Path, required=True, help="HTML file to write, e.g. report.html")
    report.set_defaults(func=cmd_report)

    demo = commands.add_parser("demo", help="run the pipeline end to end on the shipped real rat clip")
    demo.add_argument("outdir", type=Path, help="output folder")
    demo.add_argument("--fresh", action="store_true", help="start over from a new session file")
    demo.add_argument("--frames", type=int, help="only the first N frames of the clip (600 to 1000; default all)")
    demo.set_defaults(func=cmd_demo)

    instance_help = "DANDI instance: dandi, dandi-sandbox or an archive URL (default: $DANDI_INSTANCE or dandi)"
    default_instance = os.environ.get("DANDI_INSTANCE", "dandi")

    publish = commands.add_parser(
        "publish",
        help="organize sessions into a dandiset folder (DANDI names), validate them, upload them to DANDI",
        description="The API key is read from the variable dandi-cli uses for the instance "
        "(DANDI_API_KEY, DANDI_SANDBOX_API_KEY, ...); it is never prompted for or stored.",
    )
    publish.add_argument("sessions", nargs="+", type=Path, help="session NWB files")
    publish.add_argument("--dandiset", help="id of the dandiset (6 digits), created on the archive beforehand")
    publish.add_argument("--instance", default=default_instance, help=instance_help)
    publish.add_argument("--dandiset-dir", type=Path, help="local dandiset folder (default: ./<dandiset id>)")
    publish.add_argument(
        "--files-mode",
        default="copy",
        choices=["copy", "hardlink", "symlink"],
        help="how sessions enter the dandiset folder (default: copy)",
    )
    publish.add_argument(
        "--existing",
        default="refresh",
        choices=["refresh", "skip", "overwrite", "force", "error"],
        help="assets already on the archive (dandi upload --existing; default: refresh)",
    )
    publish.add_argument("--validate-only", action="store_true", help="organize and validate, do not upload")
    publish.set_defaults(func=cmd_publish)

    download = commands.add_parser("download", help="download a dandiset, a folder of it or one asset from DANDI")
    download.add_argument("dandiset", help="dandiset id (6 digits)")
    download.add_argument("path", nargs="?", help="asset path or folder inside the dandiset (default: all of it)")
    download.add_argument("-o", "--output-dir", type=Path, default=Path("."), help="where to put it (default: .)")
    download.add_argument("--instance", default=default_instance, help=instance_help)
    download.add_argument("--version", help="dandiset version (default: latest published, else draft)")
    download.add_argument(
        "--existing",
        default="error",
        choices=["error", "skip", "overwrite", "overwrite-different", "refresh"],
        help="local files already there (dandi download --existing; default: error)",
    )
    download.set_defaults(func=cmd_download)

    batch = commands.add_parser(
        "batch",
        help="run stages over many sessions in parallel on Dask (a local cluster, or --scheduler)",
        description="One task per session runs its stages in order; sessions run in parallel; a failing session is "
        "reported and the others go on; stages whose results are already in a session are skipped. "
        "Exit code 2 when any stage failed.",
    )
    batch.add_argument(
        "source",
        type=Path,
        help="manifest (.yaml/.csv: path, keypoints, units, labels, checkpoint, STAGE.KEY options), "
        "a folder of .nwb files, or a dandiset folder (sub-*/*.nwb)",
    )
    batch.add_argument(
        "--stages",
        required=True,
        help="stages in order, comma-separated: import_keypoints, import_units, import_labels, stac, "
        "inverse_dynamics, train_controller, simulate, encode, rsa",
    )
    batch.add_argument(
        "--option",
        action="append",
        metavar="STAGE.KEY=VALUE",
        help="a stage option (config field or argument; value read as YAML), e.g. "
        "stac.smoothness_weight=0.1 (repeatable)",
    )
    batch.add_argument(
        "--scheduler", help="address of an existing Dask scheduler, e.g. tcp://10.0.0.1:8786 (default: a local cluster)"
    )
    batch.add_argument(
        "--workers", type=int, help="local worker processes (default: one per core, at most one per session)"
    )
    batch.add_argument(
        "--threads-per-worker",
        type=int,
        default=1,
        help="sessions each local worker runs at once (default 1; BLAS/XLA stay at one thread)",
    )
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")
    batch.set_defaults(func=cmd_batch)

    # Every command that can replace its results can replace what was derived from them too.
    for command in commands.choices.values():
        if "--replace" in command._option_string_actions:
            command.add_argument(
                "--replace-dependents",
                action="store_true",
                help="with --replace: also replace the results derived from the replaced ones "
                "(without it such a replace is refused, naming them)",
            )
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from .session import replacing_dependents

    try:
        with replacing_dependents(getattr(args, "replace_dependents", False)):
            return args.func(args) or 0
    except InputError as error:
        print(f"mimic-nwb: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a damaged chunk met while reading: one line naming the datasets
        from .storage import damaged_file_message

        message = damaged_file_message(getattr(args, "session", None), error)
        if message is None:
            raise
        print(f"mimic-nwb: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mimic-nwb: interrupted; the session file is unchanged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
