"""The ``mimic-nwb`` command: one subcommand per pipeline stage.

Each subcommand only parses its arguments and calls the stage's NWB adapter. Bad input ends
with one line ``mimic-nwb: error: ...`` on stderr and exit code 2, and changes nothing on disk.
"""

import argparse
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

    path = create_session(args.session, _metadata_from_args(args), overwrite=args.overwrite)
    print(f"created {path}")


def cmd_import_keypoints(args):
    from .importers.keypoints import import_keypoints

    summary = import_keypoints(
        args.session,
        args.source,
        skeleton=args.skeleton,
        rate=args.rate,
        timestamps=args.timestamps,
        starting_time=args.starting_time,
        animal=args.animal,
        units=args.units,
        reference_frame=args.reference_frame,
        videos=args.video,
        name=args.name,
        replace=args.replace,
    )
    print(summary)


def cmd_inspect(args):
    from .inspect import inspect_session

    report, ok = inspect_session(args.session, run_inspector=not args.no_inspector)
    print(report)
    return 0 if ok else 1


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
        "import-keypoints", help="import 3D keypoints (DANNCE .mat, or an NWB file with ndx-pose) into a session"
    )
    keypoints.add_argument("session", type=Path)
    keypoints.add_argument("source", type=Path, help="DANNCE save_data_*.mat, or an NWB file with ndx-pose")
    keypoints.add_argument("--skeleton", help="skeleton .mat (joint_names, joints_idx) or a built-in name: rat23, mouse22")
    keypoints.add_argument("--rate", type=float, help="frame rate in Hz (regular frames)")
    keypoints.add_argument("--timestamps", type=Path, help="per-frame times on the session clock (.npy or text, s)")
    keypoints.add_argument("--starting-time", type=float, default=0.0, help="time of the first frame, s (with --rate)")
    keypoints.add_argument("--animal", type=int, help="animal index of multi-animal predictions (N, A, 3, K)")
    keypoints.add_argument("--units", default="mm", choices=["mm", "m"], help="units of the source positions")
    keypoints.add_argument("--reference-frame", help="description of the world frame of the keypoints")
    keypoints.add_argument("--video", action="append", help="path of a source video (repeatable)")
    keypoints.add_argument("--name", default="PoseEstimation", help="name of the PoseEstimation in processing/behavior")
    keypoints.add_argument("--replace", action="store_true", help="replace keypoints of the same name")
    keypoints.set_defaults(func=cmd_import_keypoints)

    inspect = commands.add_parser("inspect", help="summarise, validate and inspect a session file")
    inspect.add_argument("session", type=Path)
    inspect.add_argument("--no-inspector", action="store_true", help="skip nwbinspector (faster)")
    inspect.set_defaults(func=cmd_inspect)

    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except InputError as error:
        print(f"mimic-nwb: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mimic-nwb: interrupted; the session file is unchanged", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
