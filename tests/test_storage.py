"""Chunked, compressed, streamed datasets: what is written equals the data, chunked along time."""

import h5py
import numpy as np
import pytest

from mimic_nwb.session import append
from mimic_nwb.storage import BlockIterator, chunk_shape, compressed, streamed
from ndx_mimic import NamedColumnSeries

from helpers import new_session


def _series(name, data, columns=40):
    return NamedColumnSeries(
        name=name, data=data, unit="a.u.", column_names=[f"c{i}" for i in range(columns)], rate=50.0, description="x"
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
    # too few rows: refused when the blocks end, before the rows read are written
    iterator = streamed([np.zeros((5, 3))], (10, 3), "float64").data
    with pytest.raises(ValueError, match="blocks gave 5 rows, expected 10"):
        next(iterator)
    iterator = streamed([np.zeros((5, 3)), np.zeros((6, 3))], (10, 3), "float64").data
    with pytest.raises(ValueError, match="blocks gave more than the 10 rows expected"):
        list(iterator)
    with pytest.raises(ValueError, match=r"block of shape \(5, 2\) does not fit rows of shape \(3,\)"):
        list(streamed([np.zeros((5, 2))], (10, 3), "float64").data)


@pytest.mark.parametrize("block_rows", [1, 7, 333, 1000, 1771, 1772, 5000, 40_000])
def test_streamed_blocks_are_written_in_whole_chunks(block_rows):
    # Blocks of any size are regrouped into writes that start and end on chunk boundaries (the
    # last one at the end of the data), carrying exactly the rows given, in order.
    rng = np.random.default_rng(block_rows)
    full = rng.standard_normal((12_345, 74))
    rows = chunk_shape(full.shape, 8)[0]  # 1771 rows of 74 float64
    blocks = [full[i : i + block_rows] for i in range(0, len(full), block_rows)]
    blocks.insert(1, full[:0])  # an empty block is allowed
    chunks = list(BlockIterator(blocks, full.shape, full.dtype))
    starts = [c.selection[0].start for c in chunks]
    stops = [c.selection[0].stop for c in chunks]
    assert starts == [0] + stops[:-1] and stops[-1] == len(full)
    assert all(start % rows == 0 for start in starts)
    assert all((stop - start) % rows == 0 for start, stop in zip(starts[:-1], stops[:-1]))
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks]), full)
    assert all(c.selection[1] == slice(0, 74) for c in chunks)


@pytest.mark.parametrize("block_rows", [1, 999, 1000, 1771, 4096])
def test_streamed_odd_blocks_round_trip_exactly_through_an_append(tmp_path, block_rows):
    rng = np.random.default_rng(7)
    full = rng.standard_normal((6_001, 74))  # 3 chunks of 1771 rows and an edge chunk of 688
    blocks = (full[i : i + block_rows] for i in range(0, len(full), block_rows))
    path = new_session(tmp_path)
    with append(path) as s:
        s.add(_series("streamed_series", streamed(blocks, full.shape, full.dtype), columns=74))
    with h5py.File(path, "r") as f:
        dataset = f["processing/mimic/streamed_series/data"]
        assert dataset.chunks == (1771, 74) and dataset.dtype == np.float64
        np.testing.assert_array_equal(dataset[:], full)


def test_chunks_hold_whole_rows_of_about_one_mebibyte():
    assert chunk_shape((180_000, 3000), 2) == (174, 3000)
    assert chunk_shape((100, 74), 8) == (100, 74)
