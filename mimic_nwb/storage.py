"""How large arrays are stored: chunked along time, compressed, and written by streaming.

Every stage wraps its T x N arrays with :func:`compressed` (an array already in memory) or
:func:`streamed` (blocks of rows produced one after another, so a long session is never held
in memory whole). Both give gzip-compressed datasets chunked along time, readable by any HDF5
tool.
"""

import numpy as np
from hdmf.data_utils import AbstractDataChunkIterator, DataChunk
from pynwb import H5DataIO

CHUNK_BYTES = 1 << 20  # ~1 MiB chunks: small enough for windowed reads, large enough for throughput
COMPRESSION = dict(compression="gzip", compression_opts=4, shuffle=True)


def chunk_shape(shape, itemsize, chunk_bytes=CHUNK_BYTES):
    """Chunks that hold whole rows (all columns) and as many time points as fit ``chunk_bytes``."""
    row_bytes = itemsize * int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else itemsize
    rows = max(1, min(shape[0], chunk_bytes // max(row_bytes, 1)))
    return (rows, *shape[1:])


def compressed(array, chunk_bytes=CHUNK_BYTES):
    """An in-memory array as a chunked, compressed dataset."""
    array = np.asarray(array)
    if array.size == 0:
        return array
    return H5DataIO(data=array, chunks=chunk_shape(array.shape, array.itemsize, chunk_bytes), **COMPRESSION)


class BlockIterator(AbstractDataChunkIterator):
    """Writes a (T, ...) dataset from consecutive blocks of rows, holding one block at a time."""

    def __init__(self, blocks, shape, dtype, chunk_bytes=CHUNK_BYTES):
        self._blocks = iter(blocks)
        self._shape = tuple(shape)
        self._dtype = np.dtype(dtype)
        self._chunks = chunk_shape(self._shape, self._dtype.itemsize, chunk_bytes)
        self._row = 0

    def __iter__(self):
        return self

    def __next__(self):
        block = next(self._blocks, None)
        if block is None:
            if self._row != self._shape[0]:
                raise ValueError(f"blocks gave {self._row} rows, expected {self._shape[0]}")
            raise StopIteration
        block = np.asarray(block, dtype=self._dtype)
        if block.shape[1:] != self._shape[1:]:
            raise ValueError(f"block of shape {block.shape} does not fit rows of shape {self._shape[1:]}")
        start, self._row = self._row, self._row + len(block)
        if self._row > self._shape[0]:
            raise ValueError(f"blocks gave more than the {self._shape[0]} rows expected")
        rest = tuple(slice(0, n) for n in self._shape[1:])
        return DataChunk(data=block, selection=(slice(start, self._row), *rest))

    def recommended_chunk_shape(self):
        return self._chunks

    def recommended_data_shape(self):
        return self._shape

    @property
    def dtype(self):
        return self._dtype

    @property
    def maxshape(self):
        return self._shape


def streamed(blocks, shape, dtype, chunk_bytes=CHUNK_BYTES):
    """A dataset of ``shape`` written from an iterable of row blocks (each (rows, *shape[1:]))."""
    iterator = BlockIterator(blocks, shape, dtype, chunk_bytes)
    return H5DataIO(data=iterator, chunks=iterator.recommended_chunk_shape(), **COMPRESSION)
