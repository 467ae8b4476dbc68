"""Chunked, compressed, streamed datasets: what is written equals the data, chunked along time."""

import h5py
import numpy as np
import pytest

from mimic_nwb.session import append
from mimic_nwb.storage import chunk_shape, compressed, streamed
from ndx_mimic import NamedColumnSeries

from helpers import new_session


def _series(name, data):
    return NamedColumnSeries(
        name=name, data=data, unit="a.u.", column_names=[f"c{i}" for i in range(40)], rate=50.0, description="x"
    )


def test_streamed_and_compressed_write_the_same_values(tmp_path):
    rng = np.random.default_rng(0)
    full = rng.standard_normal((10_000, 40)).astype("float32")
    blocks = (full[i : i + 777] for i in range(0, len(full), 777))  # uneven blocks
    path = new_session(tmp_path)
    with append(path) as s:
        s.add(_series("streamed_series", streamed(blocks, full.shape, full.dtype)))
        s.add(_series("compressed_series", compressed(full)))
    with h5py.File(path, "r") as f:
        for name in ("streamed_series", "compressed_series"):
            dataset = f[f"processing/mimic/{name}/data"]
            np.testing.assert_array_equal(dataset[:], full)
            assert dataset.compression == "gzip"
            assert dataset.chunks[1] == 40 and dataset.chunks[0] == chunk_shape(full.shape, 4)[0]


def test_streamed_checks_the_row_count():
    blocks = [np.zeros((5, 3))]
    iterator = streamed(blocks, (10, 3), "float64").data
    next(iterator)
    with pytest.raises(ValueError, match="blocks gave 5 rows, expected 10"):
        next(iterator)


def test_chunks_hold_whole_rows_of_about_one_mebibyte():
    assert chunk_shape((180_000, 3000), 2) == (174, 3000)
    assert chunk_shape((100, 74), 8) == (100, 74)
