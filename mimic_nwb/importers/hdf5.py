"""Reading other tools' HDF5 outputs: checked datasets, names, configuration text and digests.

Shared by the stac-mjx, track-mjx and MIMIC importers. Every problem is an InputError of one line
naming the file and the dataset.
"""

import contextlib
import hashlib
from pathlib import Path

import h5py
import numpy as np
import yaml

from ..errors import InputError


@contextlib.contextmanager
def open_h5(path, expected):
    """The HDF5 file at ``path``, read only; ``expected`` describes the layout in the error when it is not HDF5."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file (expected {expected})")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise InputError(f"{path}: cannot be read as HDF5 ({error})") from None
    with f:
        try:
            yield f
        except OSError as error:  # a damaged dataset
            raise InputError(f"{path}: cannot be read as HDF5 ({error})") from None


def read_dataset(f, key, source, optional=False):
    """A dataset's value, or None when ``optional`` and absent."""
    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        if optional:
            return None
        raise InputError(f"{source}: no dataset '{key}'")
    return obj[()]


def numeric(value, key, source, ndim=None):
    """A numeric array (float64 unless integer; booleans as integers), of ``ndim`` dimensions when given."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise InputError(f"{source}: '{key}' is not numeric (dtype {array.dtype})")
    if array.dtype.kind == "b":
        array = array.astype(np.int64)
    if ndim is not None and array.ndim not in np.atleast_1d(ndim):
        raise InputError(f"{source}: '{key}' has shape {array.shape}, expected {_ndim_text(ndim)}")
    if array.dtype.kind == "f" and np.isinf(array).any():
        raise InputError(f"{source}: '{key}' contains infinite values")
    return array


def _ndim_text(ndim):
    return " or ".join(f"{n}-D" for n in np.atleast_1d(ndim))


def as_text(value):
    """A scalar (or one-element array) of bytes or str as str."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def name_list(value, key, source):
    """A 1-D dataset of names as a list of str."""
    array = np.asarray(value)
    if array.ndim != 1 or array.dtype.kind not in "SUO":
        raise InputError(f"{source}: '{key}' must be a 1-D list of names, got shape {array.shape} ({array.dtype})")
    return [as_text(v) for v in array]


def parse_config(value, key, source):
    """A YAML or JSON text dataset as a mapping of settings."""
    try:
        config = yaml.safe_load(as_text(value))  # JSON is YAML
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise InputError(f"{source}: '{key}' is not YAML/JSON text ({str(error).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise InputError(f"{source}: '{key}' is not a mapping of settings")
    return config


def attribute_dict(obj):
    """An HDF5 object's attributes, byte strings decoded."""
    return {key: as_text(v) if isinstance(v, (bytes, np.bytes_)) else v for key, v in obj.attrs.items()}


def file_sha256(path):
    """SHA-256 of a file's bytes (hex), recorded as the provenance of an import."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
