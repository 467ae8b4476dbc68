"""How large arrays are stored: chunked along time, compressed, checksummed, written by streaming.

Every stage wraps its T x N arrays with :func:`compressed` (an array already in memory) or
:func:`streamed` (blocks of rows produced one after another, so a long session is never held
in memory whole). Both give gzip-compressed datasets chunked along time with HDF5's Fletcher32
checksum on every chunk, readable by any HDF5 tool. :func:`verify_datasets` reads every dataset
of a file once, chunk by chunk, and names those that cannot be read (a damaged chunk fails its
checksum or its decompression).

Long per-frame outputs that a stage produces row by row (a rollout's activations, an inverse
dynamics' forces) go to :func:`scratch_array`: an array on an unlinked temporary file, mapped
into memory, whose written pages :func:`release` hands back to the file (the process keeps
only the rows it is writing). :func:`stored` writes such an array to the session in blocks of
rows (and :func:`quantized` quantizes it block by block), so neither the stage nor the write
holds the whole session in memory.
"""

import mmap
import tempfile
from collections import deque

import h5py
import numpy as np
from hdmf.data_utils import AbstractDataChunkIterator, DataChunk
from pynwb import H5DataIO

CHUNK_BYTES = 1 << 20  # ~1 MiB chunks: small enough for windowed reads, large enough for throughput
# fletcher32: a checksum per chunk, verified by HDF5 on every read, so a flipped bit on disk is an
# error naming the dataset rather than wrong numbers (cost measured in benchmarks/write_bench.py).
COMPRESSION = dict(compression="gzip", compression_opts=4, shuffle=True, fletcher32=True)
# Bytes read at a time when verifying a contiguous (unchunked) dataset.
VERIFY_BLOCK_BYTES = 16 << 20


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


# --- scratch arrays: per-frame outputs on disk, not in memory ------------------------------------

SCRATCH_BLOCK_BYTES = 16 << 20  # rows read at a time from a scratch array when it is written


def scratch_array(shape, dtype, folder=None) -> np.ndarray:
    """A zero-filled array of ``shape`` and ``dtype`` on an unlinked temporary file in ``folder``.

    The file is unlinked at once (nothing is left behind, even after ``kill -9``) and freed when
    the last view of the array goes. Pages written stay in the process until :func:`release`;
    reading an element brings its page back from the file (the page cache, usually). Use it for
    (T, ...) outputs written row by row whose T can be hours of frames.
    """
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    nbytes = max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
    with tempfile.TemporaryFile(dir=folder) as file:
        file.truncate(nbytes)  # sparse: no disk used before rows are written
        mapping = mmap.mmap(file.fileno(), nbytes)  # holds its own descriptor
    return np.frombuffer(mapping, dtype=dtype, count=int(np.prod(shape, dtype=np.int64))).reshape(shape)


def _mapping(array):
    """The ``mmap`` an array (or a view of it) lies in, or None."""
    base = array
    while base is not None:
        if isinstance(base, mmap.mmap):
            return base
        # ndarray views point to their base; np.frombuffer's array to a memoryview of the mmap
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return None


def is_scratch(array) -> bool:
    """Whether ``array`` lies in a memory-mapped file (a :func:`scratch_array` or a view of one)."""
    return isinstance(array, np.ndarray) and _mapping(array) is not None


def release(array) -> None:
    """Hand the pages of a memory-mapped array back to its file (no-op for other arrays).

    Written pages are kept by the kernel's page cache and written to the file, not lost
    (``MADV_DONTNEED`` on a shared file mapping); the process's resident memory drops.
    """
    mapping = _mapping(array)
    if mapping is not None and hasattr(mapping, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


def row_blocks(array, block_bytes=SCRATCH_BLOCK_BYTES):
    """Copies of consecutive blocks of rows of ``array``; a mapped array is released after each."""
    row_bytes = max(1, array.itemsize * int(np.prod(array.shape[1:], dtype=np.int64)))
    rows = max(1, block_bytes // row_bytes)
    for start in range(0, len(array), rows):
        block = np.array(array[start : start + rows])
        release(array)
        yield block


def stored(array, chunk_bytes=CHUNK_BYTES):
    """A dataset for ``array``: :func:`compressed`, or written in blocks of rows (:func:`streamed`)
    when it lies in a memory-mapped file, so that writing it never reads it whole into memory."""
    if is_scratch(array) and array.size:
        return streamed(row_blocks(array), array.shape, array.dtype, chunk_bytes)
    return compressed(array, chunk_bytes)


# Quantized series: int16 over a series' own range, as NWB stores digitised data. Readers without
# a half-precision type (h5wasm, behind the web viewers on DANDI; MATLAB) cannot read float16.
_QUANTIZED_STEPS = 2 * 32767 - 2  # int16 codes used, -32766..32766 (margin for float32 rounding)


def quantized(values, description):
    """TimeSeries arguments storing ``values`` (T, N) as int16 with ``conversion`` and ``offset``.

    Stored code ``q`` reads back as ``q * conversion + offset`` (pynwb's ``get_data_in_units``);
    ``conversion`` (the step, also given as ``resolution``) and ``offset`` are the float32 values
    NWB stores, and the codes are rounded with exactly those, so the error of a value read back
    in float64 is at most half a step; in float32 arithmetic (as ``get_data_in_units`` on int16
    data computes) add two float32 roundings of the largest magnitude. That bound, in the
    series' unit, is appended to ``description``. Values that are not all finite are stored
    as float32 instead (no integer code for NaN). A memory-mapped ``values`` (:func:`scratch_array`)
    is read and quantized block by block of rows (the same codes), never whole.

    Returns a dict with ``data`` (compressed), ``conversion``, ``offset``, ``resolution`` and
    ``description``, to pass to the TimeSeries (or subtype) constructor.
    """
    mapped = is_scratch(values)
    if not mapped:
        values = np.asarray(values, dtype=np.float64)
    blocks = row_blocks(values) if mapped else (values,)
    finite, lo, hi = True, np.inf, -np.inf
    for block in blocks:
        block = np.asarray(block, dtype=np.float64)
        if block.size:
            finite = finite and bool(np.all(np.isfinite(block)))
            lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if values.size == 0 or not finite:
        data = (
            streamed((b.astype(np.float32) for b in row_blocks(values)), values.shape, np.float32)
            if mapped and values.size
            else compressed(np.asarray(values).astype(np.float32))
        )
        return dict(
            data=data,
            description=description + (" Stored as float32 (not every value is finite)." if values.size else ""),
        )
    magnitude = max(abs(lo), abs(hi))
    span = hi - lo if hi > lo else max(magnitude, 1.0) * 2.0**-16  # constant: any small step
    # float32 step rounded up, so that the range still fits the codes.
    step = np.float32(span / _QUANTIZED_STEPS)
    if float(step) * _QUANTIZED_STEPS < span:
        step = np.nextafter(step, np.float32(np.inf))
    offset = np.float32((lo + hi) / 2)

    def codes(block):
        block = np.asarray(block, dtype=np.float64)
        return np.clip(np.rint((block - float(offset)) / float(step)), -32767, 32767).astype(np.int16)

    if mapped:
        data = streamed((codes(b) for b in row_blocks(values)), values.shape, np.int16)
    else:
        data = compressed(codes(values))
    bound = 0.5 * float(step) + 2 * float(np.finfo(np.float32).eps) * magnitude
    note = (
        f" Stored as int16: value = data * conversion + offset, absolute error at most {bound:.3g} "
        f"(values from {lo:.6g} to {hi:.6g})."
    )
    return dict(
        data=data,
        conversion=float(step),
        offset=float(offset),
        resolution=float(step),
        description=description + note,
    )


class BlockIterator(AbstractDataChunkIterator):
    """Writes a (T, ...) dataset from consecutive blocks of rows, in whole chunks.

    Blocks may have any number of rows; rows are buffered and written as DataChunks that start
    and end on chunk boundaries (the last one ends at row T). A write that covers part of a
    compressed chunk makes HDF5 read, decompress and recompress that chunk again for the next
    write, and a session append writes without a chunk cache (``session._working_copy``), so
    unaligned blocks cost about twice as much. Memory: the block being written, the rows left from
    the one before (fewer than a chunk's) and, when they are joined, one copy of both.
    """

    def __init__(self, blocks, shape, dtype, chunk_bytes=CHUNK_BYTES):
        self._blocks = iter(blocks)
        self._shape = tuple(shape)
        self._dtype = np.dtype(dtype)
        self._chunks = chunk_shape(self._shape, self._dtype.itemsize, chunk_bytes)
        self._pending = deque()  # blocks (or their tails) read but not yet written, in order
        self._pending_rows = 0
        self._read = 0  # rows taken from ``blocks``
        self._written = 0  # rows handed to the writer
        self._exhausted = False

    def __iter__(self):
        return self

    def __next__(self):
        chunk_rows = self._chunks[0]
        while self._pending_rows < chunk_rows and not self._exhausted:
            self._take_block()
        if self._pending_rows == 0:
            raise StopIteration
        # Whole chunks, or the rest when the rows are all read (it ends at row T: an edge chunk).
        rows = self._pending_rows if self._exhausted else self._pending_rows - self._pending_rows % chunk_rows
        data = self._pop(rows)
        start, self._written = self._written, self._written + rows
        rest = tuple(slice(0, n) for n in self._shape[1:])
        return DataChunk(data=data, selection=(slice(start, self._written), *rest))

    def _take_block(self):
        block = next(self._blocks, None)
        if block is None:
            if self._read != self._shape[0]:
                raise ValueError(f"blocks gave {self._read} rows, expected {self._shape[0]}")
            self._exhausted = True
            return
        block = np.asarray(block, dtype=self._dtype)
        if block.shape[1:] != self._shape[1:]:
            raise ValueError(f"block of shape {block.shape} does not fit rows of shape {self._shape[1:]}")
        self._read += len(block)
        if self._read > self._shape[0]:
            raise ValueError(f"blocks gave more than the {self._shape[0]} rows expected")
        if len(block):
            self._pending.append(block)
            self._pending_rows += len(block)

    def _pop(self, rows):
        """The first ``rows`` pending rows as one array (a view when they lie in one block)."""
        taken, count = [], 0
        while count < rows:
            block = self._pending[0]
            need = rows - count
            if len(block) <= need:
                taken.append(self._pending.popleft())
                count += len(block)
            else:
                taken.append(block[:need])
                # A copy: the rows left are fewer than a chunk's, and the block they came from is freed.
                self._pending[0] = block[need:].copy()
                count = rows
        self._pending_rows -= rows
        return taken[0] if len(taken) == 1 else np.concatenate(taken)

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
    """A dataset of ``shape`` written from an iterable of row blocks (each ``(rows, *shape[1:])``)."""
    iterator = BlockIterator(blocks, shape, dtype, chunk_bytes)
    return H5DataIO(data=iterator, chunks=iterator.recommended_chunk_shape(), **COMPRESSION)


def verify_datasets(path):
    """Read every dataset of an HDF5 file once; return one line per dataset that cannot be read.

    Chunked datasets are read chunk by chunk and contiguous ones in blocks of rows, so memory
    stays bounded by one chunk (or ``VERIFY_BLOCK_BYTES``) whatever the file's size. A chunk that
    fails its Fletcher32 checksum or its decompression makes its dataset's line name the dataset,
    the rows of the first bad chunk and HDF5's reason. An empty list: every byte of data read back.
    """
    problems = []

    def check(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        try:
            _read_all(obj)
        except (OSError, RuntimeError, ValueError) as error:
            problems.append(f"dataset /{name}: cannot be read ({_first_line(error)})")

    with h5py.File(path, "r") as f:
        f.visititems(check)
    return problems


# What HDF5 says when stored bytes cannot be turned back into data (a failed checksum or
# decompression); other OSErrors (missing file, disk full, permissions) are not damage.
_READ_FAILURES = ("can't synchronously read data", "can't read data", "filter returned failure", "checksum")


def damaged_file_message(path, error):
    """One line naming the damaged datasets of ``path`` when ``error`` is an HDF5 data-read failure.

    For the command line: a stage that hits a damaged chunk while reading gets h5py's OSError,
    which does not say which dataset; this re-reads the file (`verify_datasets`) to name them.
    Returns None when ``error`` is not a read failure of that kind or ``path`` is not a file.
    """
    from pathlib import Path

    text = str(error).lower()
    if path is None or not any(failure in text for failure in _READ_FAILURES) or not Path(path).is_file():
        return None
    try:
        problems = verify_datasets(path)
    except OSError:
        problems = []
    named = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    return (
        f"{path}: the file is damaged, data cannot be read"
        + (f": {named}" if named else f" ({_first_line(error)})")
        + "; restore it from a copy (mimic-nwb inspect lists every damaged dataset)"
    )


class _BadBlock(OSError):
    pass


def _read_all(dataset):
    if dataset.shape is None or dataset.size == 0:
        return
    if dataset.chunks is not None:
        for selection in dataset.iter_chunks():
            try:
                dataset[selection]
            except (OSError, RuntimeError, ValueError) as error:
                raise _BadBlock(f"{_where(selection)}: {_first_line(error)}") from None
        return
    if dataset.ndim == 0:
        dataset[()]
        return
    row_bytes = max(1, dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64)))
    step = max(1, VERIFY_BLOCK_BYTES // row_bytes)
    for start in range(0, dataset.shape[0], step):
        try:
            dataset[start : start + step]
        except (OSError, RuntimeError, ValueError) as error:
            raise _BadBlock(f"rows {start}-{min(start + step, dataset.shape[0]) - 1}: {_first_line(error)}") from None


def _where(selection):
    rows = selection[0] if selection else slice(0, 1)
    return f"chunk at rows {rows.start}-{rows.stop - 1}"


def _first_line(error):
    text = str(error).strip().splitlines()
    return " ".join(text[0].split()) if text else type(error).__name__
