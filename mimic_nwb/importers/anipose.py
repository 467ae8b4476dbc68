"""3D keypoints from Anipose: the CSV that ``anipose triangulate`` writes in ``pose-3d/``.

Layout (anipose ``triangulate.py``): one row per frame; per keypoint ``<node>_x``, ``<node>_y``,
``<node>_z`` (in the unit of the calibration board, usually mm), ``<node>_error`` (reprojection
error, pixels), ``<node>_ncams`` (cameras used) and ``<node>_score`` (the lowest 2D score among
them); ``M_00`` ... ``M_22`` and ``center_0`` ... ``center_2``, the rotation and centre Anipose
applied to align the axes (identity and zero without alignment); ``fnum``, the frame number.
Points seen by fewer than two cameras are empty (NaN).
"""

from pathlib import Path

import numpy as np

from ..errors import InputError
from .keypoint_data import (
    Keypoints,
    SkeletonSpec,
    check_positions,
    real_array,
    resolve_skeleton,
    unit_scale,
)

AXES = ("x", "y", "z")


def anipose_nodes(columns):
    """Keypoint names of an Anipose 3D table: prefixes with ``_x``, ``_y`` and ``_z`` columns, in order."""
    columns = list(columns)
    return [c[:-2] for c in columns if c.endswith("_x") and f"{c[:-2]}_y" in columns and f"{c[:-2]}_z" in columns]


def read_anipose_csv(path, units=None, skeleton=None, keypoint_names=None):
    """Read an Anipose ``pose-3d`` CSV: positions (N, K, 3) in meters (``units`` of the file, default mm).

    ``<node>_score`` becomes the confidence, ``fnum`` the frame ids; ``skeleton`` /
    ``keypoint_names`` (optional) name and order the keypoints.
    """
    import pandas as pd

    path = Path(path)
    units = units or "mm"
    scale = unit_scale(units)
    try:
        table = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise InputError(f"{path}: not a readable CSV ({str(error).splitlines()[0][:80]})") from None
    nodes = anipose_nodes(table.columns)
    if not nodes:
        raise InputError(f"{path}: no <keypoint>_x, _y, _z columns (not an Anipose 3D CSV)")
    if len(table) == 0:
        raise InputError(f"{path}: no rows")
    positions = (
        np.stack(
            [np.stack([_numbers(table, f"{node}_{axis}", path) for axis in AXES], axis=1) for node in nodes], axis=1
        )
        * scale
    )
    check_positions(positions, path, units)
    confidence = None
    if all(f"{node}_score" in table for node in nodes):
        confidence = np.stack([_numbers(table, f"{node}_score", path) for node in nodes], axis=1)
    frame_ids = _numbers(table, "fnum", path) if "fnum" in table else None
    keypoints = Keypoints(
        positions=positions,
        skeleton=SkeletonSpec(path.stem, nodes, np.zeros((0, 2), dtype=np.int64)),
        confidence=confidence,
        frame_ids=frame_ids,
        source_software="Anipose",
        layout="Anipose pose-3d CSV",
        reference_frame=_reference_frame(table, path),
        confidence_definition="Anipose score: the lowest 2D detection score among the cameras used",
        frame_ids_name="fnum",
        named_by_source=False,
    )
    return resolve_skeleton(keypoints, skeleton, keypoint_names, path)


def _numbers(table, column, path):
    """One column as float64; text in it is an error naming the column and the first bad row."""
    import pandas as pd

    values = table[column]
    if values.dtype.kind in "iuf":
        return values.to_numpy(dtype=np.float64)
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna() & values.notna()
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise InputError(f"{path}: column {column!r} holds {values.iloc[row]!r} in row {row + 1}, not a number")
    return real_array(numeric.to_numpy(dtype=np.float64), f"{path}: {column}")


def _reference_frame(table, path):
    """The Anipose frame, with the alignment (M, center) it recorded."""
    text = "Anipose 3D frame of the calibrated cameras"
    names = [f"M_{i}{j}" for i in range(3) for j in range(3)] + [f"center_{i}" for i in range(3)]
    if all(name in table for name in names):
        values = np.stack([_numbers(table, name, path) for name in names], axis=1)
        m, center = values[0, :9].reshape(3, 3), values[0, 9:]
        if not np.allclose(m, np.eye(3)) or np.any(center != 0):
            text += (
                ", centred on `center` and rotated by `M` by Anipose's axis alignment "
                f"(M = {np.round(m, 6).tolist()}, center = {np.round(center, 6).tolist()} in source units)"
            )
    return text + ", positions in meters"
