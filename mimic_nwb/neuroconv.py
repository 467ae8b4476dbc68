"""NeuroConv data interfaces: DANNCE 3D keypoints and stac-mjx registrations in an ``NWBConverter``.

Labs convert a session with NeuroConv (SpikeGLX, Kilosort/Phy, video ...); these interfaces add
what this pipeline reads to the same conversion, written exactly as ``mimic-nwb import-keypoints``
and ``mimic-nwb import-stac-mjx`` write it, so that the converted file goes on through
``mimic-nwb stac`` and the later stages:

- :class:`DannceInterface`: a DANNCE ``save_data_AVG.mat`` / ``save_data_MAX.mat`` (``pred``
  (N, 3, K) or (N, A, 3, K) in mm, optional ``p_max`` and ``sampleID``) as ndx-pose Skeleton +
  PoseEstimation in ``processing/behavior`` (metres; ``sampleID`` in ``<name>_frame_ids``). Its
  frames follow NeuroConv's temporal alignment (``get_original_timestamps``: ``sampleID`` at the
  camera ``rate``; ``set_aligned_timestamps``, ``set_aligned_starting_time``).
- :class:`StacMjxInterface`: a stac-mjx output ``.h5`` as a BodyModel + StacRegistration in
  ``processing/mimic``, linked to the keypoints already in the file (the DANNCE interface's, which
  must come first in the converter), or, in a file without keypoints, with its ``kp_data`` added as
  keypoints at ``rate``. Its frames are the keypoints' frames, so it has no clock of its own.

Reading and checking are the importers' (:func:`~mimic_nwb.importers.keypoints.read_dannce`,
:func:`~mimic_nwb.importers.stac_mjx.read_stac_mjx`), the NWB objects the writers' ones; bad input
raises :class:`~mimic_nwb.errors.InputError` (one line) when the interface is made or at
``add_to_nwbfile``. NeuroConv is an optional dependency (``pip install ndx-mimic[neuroconv]``)::

    from neuroconv import NWBConverter
    from neuroconv.datainterfaces import PhySortingInterface
    from mimic_nwb.neuroconv import DannceInterface, StacMjxInterface

    class RatConverter(NWBConverter):
        data_interface_classes = dict(Sorting=PhySortingInterface, Keypoints=DannceInterface)

    converter = RatConverter(dict(
        Sorting=dict(folder_path="phy/"),
        Keypoints=dict(file_path="save_data_AVG.mat", skeleton="rat23", rate=50.0),
    ))
    metadata = converter.get_metadata()
    metadata["NWBFile"]["session_start_time"] = "2024-01-01T10:00:00+00:00"
    converter.run_conversion(nwbfile_path="session.nwb", metadata=metadata)
"""

from dataclasses import replace
from pathlib import Path
from typing import Literal

import docstring_parser
import numpy as np
from neuroconv import BaseDataInterface
from neuroconv.basetemporalalignmentinterface import BaseTemporalAlignmentInterface
from neuroconv.utils import DeepDict
from pydantic import FilePath, validate_call
from pynwb import NWBFile

from .errors import InputError
from .importers.hdf5 import file_sha256
from .importers.keypoint_data import Keypoints, check_rate, check_time, real_array, skeleton_for_names
from .importers.keypoints import BEHAVIOR_MODULE, frame_ids_to_nwb, read_dannce, set_timing
from .importers.registration import add_keypoints, body_model_name
from .importers.stac_mjx import match_session_keypoints, read_stac_mjx
from .importers.stac_mjx import stac_mjx_registration as build_stac_mjx_registration
from .session import RESULTS_MODULE, SessionAppend, find_result, find_results
from .writers import body_model_to_nwb, registration_to_nwb

# Metadata blocks of these interfaces: {block: {metadata_key: {field: value}}}, as NeuroConv keys
# its own containers, so that two interfaces of a kind (two animals) do not share an entry.
KEYPOINTS_METADATA = "Keypoints3D"
REGISTRATION_METADATA = "StacRegistrations"
_NWB_NAME = {"type": "string", "pattern": "^[^/]+$", "description": "name of the object in the file"}


def _block_schema(fields):
    """JSON schema of a metadata block: any metadata key, each an object of ``fields``."""
    return {
        "type": "object",
        "additionalProperties": {"type": "object", "properties": fields, "additionalProperties": False},
    }


def _described(schema, method):
    """``schema`` with each argument's description from ``method``'s NumPy-style docstring.

    NeuroConv reads descriptions from the class docstring; these interfaces document their
    arguments where Python's help shows them, on ``__init__``.
    """
    properties = schema["properties"]
    for parameter in docstring_parser.parse(method.__doc__).params:
        if parameter.arg_name in properties and parameter.description:
            properties[parameter.arg_name]["description"] = " ".join(parameter.description.split())
    return schema


def _entry(metadata, block, key, defaults):
    """The interface's metadata entry over ``defaults`` (the caller's metadata as given, or the defaults)."""
    given = (metadata or {}).get(block, {}).get(key, {})
    return {**defaults, **given}


class DannceInterface(BaseTemporalAlignmentInterface):
    """DANNCE 3D keypoint predictions (``save_data_AVG.mat`` / ``save_data_MAX.mat``) into ndx-pose."""

    display_name = "DANNCE"
    keywords = ("behavior", "pose estimation", "3D keypoints", "DANNCE")
    associated_suffixes = (".mat",)
    info = "Interface for DANNCE 3D keypoint predictions (pred (N, 3, K) in mm, p_max, sampleID)."

    @classmethod
    def get_source_schema(cls) -> dict:
        return _described(super().get_source_schema(), cls.__init__)

    @validate_call
    def __init__(
        self,
        file_path: FilePath,
        *,
        skeleton: str | None = None,
        keypoint_names: list[str] | None = None,
        rate: float | None = None,
        units: Literal["mm", "cm", "m"] = "mm",
        animal: int | None = None,
        metadata_key: str = "DANNCE",
        verbose: bool = False,
    ):
        """Read and check the predictions now (an InputError names what is wrong).

        Parameters
        ----------
        file_path : FilePath
            DANNCE ``save_data_AVG.mat`` or ``save_data_MAX.mat`` (MATLAB v7): ``pred`` (N, 3, K) or
            (N, A, 3, K), optional ``p_max`` (N, K) and ``sampleID`` (N,).
        skeleton : str, optional
            Names of the K keypoints: a built-in skeleton (rat23, mouse22) or a Label3D/DANNCE
            skeleton .mat (``joint_names``, ``joints_idx``).
        keypoint_names : list of str, optional
            The K keypoint names in ``pred``'s order, instead of a skeleton.
        rate : float, optional
            Camera frame rate in Hz: frame i is at ``(sampleID[i] - sampleID[0]) / rate`` s
            (consecutive frames without ``sampleID``). Without it, set the frame times with
            ``set_aligned_timestamps``.
        units : {"mm", "cm", "m"}, default: "mm"
            Unit of ``pred``.
        animal : int, optional
            The animal (zero-based) of multi-animal predictions (N, A, 3, K).
        metadata_key : str, default: "DANNCE"
            Key of this interface's entry in the metadata block ``Keypoints3D``.
        verbose : bool, default: False
            Print a summary of what is written.
        """
        super().__init__(
            verbose=verbose,
            file_path=file_path,
            skeleton=skeleton,
            keypoint_names=keypoint_names,
            rate=rate,
            units=units,
            animal=animal,
        )
        self.file_path = Path(file_path)
        self.metadata_key = metadata_key
        self.rate = check_rate(rate)
        if skeleton is not None and keypoint_names is not None:
            raise InputError(f"{self.file_path}: give a skeleton or keypoint names, not both")
        self._keypoints = read_dannce(
            self.file_path, skeleton, units=units, animal=animal, keypoint_names=keypoint_names
        )
        self._aligned_timestamps = None

    @property
    def keypoints(self) -> Keypoints:
        """The predictions as read: positions (N, K, 3) metres, NaN where missing, frame ids."""
        return self._keypoints

    def _timed(self, timestamps=None) -> Keypoints:
        """A copy of the keypoints on a clock: ``timestamps`` (N,) s, else the camera rate from 0 s."""
        keypoints = replace(self._keypoints, notes=list(self._keypoints.notes))
        if timestamps is not None:
            return set_timing(keypoints, timestamps=timestamps, source=str(self.file_path))
        if self.rate is None:
            raise InputError(
                f"{self.file_path}: give the camera frame rate (rate=) or the frame times (set_aligned_timestamps)"
            )
        return set_timing(keypoints, rate=self.rate, starting_time=0.0, source=str(self.file_path))

    @staticmethod
    def _times(keypoints) -> np.ndarray:
        if keypoints.timestamps is not None:
            return np.asarray(keypoints.timestamps, dtype=np.float64)
        return keypoints.starting_time + np.arange(len(keypoints.positions)) / keypoints.rate

    def get_original_timestamps(self) -> np.ndarray:
        """(N,) frame times in s from 0: ``sampleID`` at the camera rate (or consecutive frames)."""
        return self._times(self._timed())

    def get_timestamps(self) -> np.ndarray:
        """(N,) frame times in s on the session clock: the aligned ones when set, else the original ones."""
        if self._aligned_timestamps is not None:
            return self._aligned_timestamps.copy()
        return self.get_original_timestamps()

    def set_aligned_timestamps(self, aligned_timestamps: np.ndarray) -> None:
        """Set the (N,) frame times in s from ``session_start_time`` (checked: finite, increasing, >= 0)."""
        timestamps = real_array(aligned_timestamps, "aligned_timestamps").ravel()
        # Checked now, where the caller made them, rather than when the file is written.
        self._aligned_timestamps = self._times(self._timed(timestamps))

    def get_metadata(self) -> DeepDict:
        metadata = super().get_metadata()
        metadata[KEYPOINTS_METADATA][self.metadata_key] = dict(
            name="PoseEstimation", reference_frame=self._keypoints.reference_frame
        )
        return metadata

    def get_metadata_schema(self) -> dict:
        schema = super().get_metadata_schema()
        schema["properties"][KEYPOINTS_METADATA] = _block_schema(
            {
                "name": {**_NWB_NAME, "description": "name of the PoseEstimation in processing/behavior"},
                "reference_frame": {"type": "string", "description": "origin and axes of the 3D positions"},
            }
        )
        return schema

    def add_to_nwbfile(self, nwbfile: NWBFile, metadata: dict | None = None) -> None:
        """Add Skeleton + PoseEstimation (+ ``<name>_frame_ids``) to ``processing/behavior``.

        ``metadata[KEYPOINTS_METADATA][metadata_key]`` may set ``name`` and ``reference_frame``.
        A skeleton of the same name already in the file is shared (it must have the same keypoints).
        """
        entry = _entry(
            metadata, KEYPOINTS_METADATA, self.metadata_key, self.get_metadata()[KEYPOINTS_METADATA][self.metadata_key]
        )
        keypoints = self._timed(self._aligned_timestamps)
        keypoints.reference_frame = entry["reference_frame"]
        # The append API of a session, over the in-memory file NeuroConv builds.
        building = SessionAppend(nwbfile, self.file_path, replaced=())
        pose = add_keypoints(building, keypoints, name=entry["name"])
        if keypoints.frame_ids is not None:
            building.check_new(f"{pose.name}_frame_ids", BEHAVIOR_MODULE)
            nwbfile.processing[BEHAVIOR_MODULE].add(frame_ids_to_nwb(keypoints, pose, pose.name))
        if self.verbose:
            print(f"{self.file_path}: processing/{BEHAVIOR_MODULE}/{pose.name}: {keypoints.summary()}")


class StacMjxInterface(BaseDataInterface):
    """A stac-mjx registration (output ``.h5``) as ndx-mimic BodyModel + StacRegistration."""

    display_name = "stac-mjx"
    keywords = ("behavior", "pose estimation", "body model", "MuJoCo", "STAC")
    associated_suffixes = (".h5",)
    info = "Interface for stac-mjx registrations of a MuJoCo body model to 3D keypoints."

    @classmethod
    def get_source_schema(cls) -> dict:
        return _described(super().get_source_schema(), cls.__init__)

    @validate_call
    def __init__(
        self,
        file_path: FilePath,
        *,
        mjcf: FilePath | None = None,
        keypoints: str | None = None,
        rate: float | None = None,
        starting_time: float = 0.0,
        metadata_key: str = "StacMjx",
        verbose: bool = False,
    ):
        """Read and check the stac-mjx output now (an InputError names what is wrong).

        Parameters
        ----------
        file_path : FilePath
            stac-mjx output ``.h5`` (``config``, ``kp_names``, ``kp_data``, ``marker_sites``,
            ``offsets``, ``qpos``, ``names_qpos``).
        mjcf : FilePath, optional
            MJCF of the model stac-mjx fitted (default: the dm_control rodent).
        keypoints : str, optional
            Name of the PoseEstimation in processing/behavior that the registration belongs to
            (default: the only one). It must hold the keypoints of ``kp_data`` (same frames,
            within 0.1 mm); the registration shares its clock.
        rate : float, optional
            Frame rate in Hz, only for a file without keypoints: ``kp_data`` is then added as
            keypoints at this rate.
        starting_time : float, default: 0.0
            Time of the first frame in s, with ``rate``.
        metadata_key : str, default: "StacMjx"
            Key of this interface's entry in the metadata block ``StacRegistrations``.
        verbose : bool, default: False
            Print a summary of what is written.
        """
        super().__init__(
            verbose=verbose,
            file_path=file_path,
            mjcf=mjcf,
            keypoints=keypoints,
            rate=rate,
            starting_time=starting_time,
        )
        self.file_path = Path(file_path)
        self.mjcf = mjcf
        self.keypoints_name = keypoints
        self.rate = check_rate(rate)
        self.starting_time = check_time(starting_time)
        self.metadata_key = metadata_key
        self.output = read_stac_mjx(self.file_path)

    def get_metadata(self) -> DeepDict:
        metadata = super().get_metadata()
        metadata[REGISTRATION_METADATA][self.metadata_key] = dict(name="StacRegistration")
        return metadata

    def get_metadata_schema(self) -> dict:
        schema = super().get_metadata_schema()
        schema["properties"][REGISTRATION_METADATA] = _block_schema(
            {"name": {**_NWB_NAME, "description": "name of the StacRegistration in processing/mimic"}}
        )
        return schema

    def _session_keypoints(self, nwbfile, output):
        """(output in the keypoints' order, PoseEstimation, timing) for a file that has keypoints."""
        pose = find_result(nwbfile, "PoseEstimation", self.keypoints_name, BEHAVIOR_MODULE, path=self.file_path)
        output, timing = match_session_keypoints(output, pose, self.file_path, self.file_path, self.rate)
        return output, pose, timing

    def add_to_nwbfile(self, nwbfile: NWBFile, metadata: dict | None = None) -> None:
        """Add the BodyModel and the StacRegistration to ``processing/mimic`` (with provenance).

        ``metadata[REGISTRATION_METADATA][metadata_key]["name"]`` names the registration (default
        ``StacRegistration``; its body model is ``BodyModel``, or ``BodyModel_<name>``).
        """
        name = _entry(metadata, REGISTRATION_METADATA, self.metadata_key, dict(name="StacRegistration"))["name"]
        model_name = body_model_name(name)
        building = SessionAppend(nwbfile, self.file_path, replaced=())
        building.check_new(name)
        building.check_new(model_name)
        output = self.output
        has_keypoints = self.keypoints_name is not None or find_results(nwbfile, "PoseEstimation", BEHAVIOR_MODULE)
        if has_keypoints:
            output, pose, timing = self._session_keypoints(nwbfile, output)
        else:
            if self.rate is None:
                raise InputError(f"{self.file_path}: the file has no keypoints; give the frame rate (rate=)")
            spec = skeleton_for_names(output.keypoint_names, "stac_mjx_keypoints")
            output = output.reordered(spec.nodes)
            timing = dict(rate=self.rate, starting_time=self.starting_time)
            pose = add_keypoints(
                building,
                Keypoints(
                    positions=output.keypoints,
                    skeleton=spec,
                    source_software="stac-mjx (kp_data)",
                    layout="stac-mjx .h5 kp_data",
                    reference_frame=(
                        "the frame of the keypoints given to stac-mjx, scaled to metres by its MOCAP_SCALE_FACTOR "
                        f"({output.mocap_scale})"
                    ),
                    **timing,
                ),
            )
        fitted, registration = build_stac_mjx_registration(output, mjcf=self.mjcf)
        body_model = building.add(
            body_model_to_nwb(fitted, model_name, f"{fitted.source} (keypoint sites at the stac-mjx offsets)"),
            parameters={"scale": fitted.scale, "actuators": fitted.actuator_kind, "mjcf": str(fitted.source)},
        )
        building.add(
            registration_to_nwb(registration, fitted, body_model, pose, timing, name, source_software="stac-mjx"),
            parameters={
                "format": "stac-mjx",
                "source": str(self.file_path),
                "source_sha256": file_sha256(self.file_path),
                "scale": output.scale,
                "mocap_scale_factor": output.mocap_scale,
                "mjcf": str(fitted.source),
                "keypoints": f"processing/{BEHAVIOR_MODULE}/{pose.name}",
                "converter": "NeuroConv (mimic_nwb.neuroconv.StacMjxInterface)",
            },
        )
        if self.verbose:
            print(
                f"{self.file_path}: processing/{RESULTS_MODULE}/{name}: {len(output.qpos)} frames, mean keypoint "
                f"error {1000 * registration.mean_error:.2f} mm"
            )
