"""3D keypoints from the SLEAP family: SLEAP analysis HDF5 with 3D points, and triangulated
``tracks`` HDF5 files (sleap-anipose's ``points3d.h5``).

Layouts, as the tools write them:

- **Triangulated** (``sleap_anipose.triangulate(..., fname=...)``): one dataset ``tracks`` of shape
  (n_frames, n_tracks, n_nodes, 3) with a ``Description`` attribute, and ``frames`` = (start,
  end), the frame range triangulated (inclusive, exclusive), when a range was asked for. No node
  names, no rate, no unit: positions are in the unit of the calibration board (usually mm), so the
  names come from ``skeleton`` / ``keypoint_names``, the rate from the caller and the unit from
  ``units`` (default mm, checked by the body-size test).
- **SLEAP analysis HDF5** (SLEAP's "Export Analysis HDF5" and sleap-io's ``save_analysis_h5``):
  ``tracks`` in SLEAP's MATLAB order (n_tracks, D, n_nodes, n_frames) unless the dataset's
  ``dims`` attribute (sleap-io, JSON list of axis names) says otherwise, or the file attribute
  ``transpose`` is false (older files: n_frames, n_nodes, D, n_tracks); ``node_names``,
  ``track_names``, ``edge_inds``, ``point_scores`` (same order without the coordinate axis).
  Only files with D = 3 (3D points) are imported.

sleap-io reads the analysis format into 2D instances only (its points are x, y) and does not read
the triangulated file, so both are read here with h5py.
"""

import json
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from .keypoint_data import (
    Keypoints,
    SkeletonSpec,
    check_positions,
    load_skeleton,
    parse_keypoint_names,
    real_array,
    resolve_skeleton,
    unit_scale,
)

SLEAP_REFERENCE_FRAME = (
    "3D frame of the calibrated camera group used for triangulation (aniposelib / sleap-anipose), positions in meters"
)
# Axis orders of an analysis file's `tracks` without a `dims` attribute, by its `transpose` attribute.
MATLAB_ORDER = ("track", "xyz", "node", "frame")
LEGACY_ORDER = ("frame", "node", "xyz", "track")


def read_sleap_h5(path, skeleton=None, keypoint_names=None, track=None, units=None):
    """Read 3D keypoints of one track from a SLEAP analysis .h5 or a triangulated ``tracks`` .h5.

    Returns Keypoints with positions (N, K, 3) in meters (``units``: unit of the file's values,
    default mm), confidence from ``point_scores`` when present, frame ids from ``frames``.
    ``track`` is a track index or name (needed when the file holds several).
    """
    path = Path(path)
    units = units or "mm"
    scale = unit_scale(units)
    try:
        with h5py.File(path, "r") as f:
            if "tracks" not in f or not isinstance(f["tracks"], h5py.Dataset):
                raise InputError(f"{path}: no 'tracks' dataset (not a SLEAP file)")
            if "node_names" in f:
                read = _read_analysis(path, f)
            else:
                read = _read_triangulated(path, f)
    except OSError as error:
        raise InputError(f"{path}: cannot be read as HDF5 ({error})") from None
    tracks, names, track_names, scores, frame_ids, layout, edges = read
    chosen = _choose_track(path, track, track_names)
    positions = tracks[:, chosen] * scale  # (N, K, 3)
    given = None  # a skeleton that names the nodes of a file without names, in file order
    if names is None:
        if skeleton is None and keypoint_names is None:
            raise InputError(
                f"{path}: the file has no node names; name its {tracks.shape[2]} keypoints with "
                "--skeleton or --keypoint-names"
            )
        if skeleton is not None:
            given = load_skeleton(skeleton)
            names = given.nodes
        else:
            names = parse_keypoint_names(keypoint_names)
        if len(names) != tracks.shape[2]:
            raise InputError(f"{path}: tracks has {tracks.shape[2]} nodes but {len(names)} keypoint names were given")
        skeleton = keypoint_names = None
    check_positions(positions, path, units)
    keypoints = Keypoints(
        positions=positions,
        skeleton=given or SkeletonSpec(path.stem, list(names), edges),
        confidence=scores[:, chosen] if scores is not None else None,
        frame_ids=frame_ids,
        source_software="SLEAP" if layout.startswith("SLEAP analysis") else "sleap-anipose",
        layout=layout + (f", track {track_names[chosen]}" if len(track_names) > 1 else ""),
        reference_frame=SLEAP_REFERENCE_FRAME,
        confidence_definition="SLEAP point score: confidence of the node's prediction",
        frame_ids_name="frames",
        named_by_source=given is not None,
    )
    return keypoints if given is not None else resolve_skeleton(keypoints, skeleton, keypoint_names, path)


def _read_triangulated(path, f):
    tracks = real_array(f["tracks"][()], f"{path}: tracks")
    if tracks.ndim != 4 or tracks.shape[3] != 3:
        raise InputError(
            f"{path}: tracks has shape {tracks.shape}; a triangulated file holds (frames, tracks, nodes, 3)"
        )
    frame_ids = None
    if "frames" in f:
        frames = real_array(f["frames"][()], f"{path}: frames").ravel()
        if frames.size != 2 or frames[1] - frames[0] != tracks.shape[0]:
            raise InputError(
                f"{path}: frames {frames.astype(np.int64).tolist()} is not the (start, end) range of its {tracks.shape[0]} frames"
            )
        frame_ids = np.arange(frames[0], frames[1])
    track_names = [f"track_{i}" for i in range(tracks.shape[1])]
    layout = "sleap-anipose triangulated tracks (frames, tracks, nodes, 3)"
    return tracks, None, track_names, None, frame_ids, layout, np.zeros((0, 2), dtype=np.int64)


def _dims(dataset, default):
    raw = dataset.attrs.get("dims")
    if raw is None:
        return default
    names = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    # sleap-io names the coordinate axis "xy"; any name other than frame/track/node is it
    return tuple(n if n in ("frame", "track", "node") else "xyz" for n in names)


def _read_analysis(path, f):
    order = MATLAB_ORDER if f.attrs.get("transpose", True) else LEGACY_ORDER
    dims = _dims(f["tracks"], order)
    raw = f["tracks"][()]
    if raw.ndim != 4 or sorted(dims) != sorted(MATLAB_ORDER):
        raise InputError(
            f"{path}: tracks has shape {raw.shape} and axes {list(dims)}; expected 4 axes {list(MATLAB_ORDER)}"
        )
    tracks = np.transpose(
        real_array(raw, f"{path}: tracks"), [dims.index(d) for d in ("frame", "track", "node", "xyz")]
    )
    if tracks.shape[3] != 3:
        raise InputError(f"{path}: SLEAP points are {tracks.shape[3]}-D; only 3D points are imported")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["node_names"][()]]
    if len(names) != tracks.shape[2]:
        raise InputError(f"{path}: node_names has {len(names)} names but tracks has {tracks.shape[2]} nodes")
    track_names = (
        [n.decode() if isinstance(n, bytes) else str(n) for n in f["track_names"][()]] if "track_names" in f else []
    )
    if not track_names:  # single-instance projects export no track names
        track_names = [f"track_{i}" for i in range(tracks.shape[1])]
    scores = None
    if "point_scores" in f:
        score_dims = _dims(f["point_scores"], tuple(d for d in dims if d != "xyz"))
        scores = np.transpose(
            real_array(f["point_scores"][()], f"{path}: point_scores"),
            [score_dims.index(d) for d in ("frame", "track", "node")],
        )
        if scores.shape != tracks.shape[:3]:
            raise InputError(f"{path}: point_scores has shape {scores.shape}, expected {tracks.shape[:3]}")
    edges = np.zeros((0, 2), dtype=np.int64)
    if "edge_inds" in f and f["edge_inds"].size:
        edges = real_array(f["edge_inds"][()], f"{path}: edge_inds", np.int64)
        if edges.ndim == 2 and edges.shape[0] == 2 and (edges.shape[1] != 2 or dims == MATLAB_ORDER):
            edges = edges.T  # transposed with the rest in MATLAB order
        if edges.ndim != 2 or edges.shape[1] != 2 or edges.min() < 0 or edges.max() >= len(names):
            raise InputError(f"{path}: edge_inds is not a list of node index pairs")
    layout = f"SLEAP analysis HDF5 with 3D points ({', '.join(dims)})"
    return tracks, names, track_names, scores, None, layout, edges


def _choose_track(path, track, track_names):
    if track is None:
        if len(track_names) > 1:
            raise InputError(
                f"{path}: holds {len(track_names)} tracks ({', '.join(track_names)}); choose one with --track"
            )
        return 0
    if str(track) in track_names:
        return track_names.index(str(track))
    try:
        index = int(track)
    except ValueError:
        raise InputError(f"{path}: no track {track!r} (tracks: {', '.join(track_names)})") from None
    if not 0 <= index < len(track_names):
        raise InputError(f"{path}: track {index} is out of range 0..{len(track_names) - 1}")
    return index
