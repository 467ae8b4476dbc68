"""Stream-write a synthetic 1-hour session and compare with raw h5py writing the same arrays.

    python benchmarks/write_bench.py [--minutes 60] [--out DIR]

A 1-hour session at 50 Hz (180,000 frames): 23 keypoints (x, y, z), qpos 74, qvel 73, actuator
controls 38 and forces 38 (float64), and 3,000 activation units (float16). Both writers use the
same chunks (~1 MiB, whole rows) and gzip level 4 + shuffle, fed by the same block generator
(blocks of one minute, 3,000 rows: not a multiple of any series' chunk rows). The NWB writer
writes like a session append (no HDF5 chunk cache); raw h5py has HDF5's default 1 MiB cache.
Each writer runs in its own process so its peak RSS is its own. Then: reading a 10-second window
of every series, and one crash-safe append of a small result to the 1-hour file.
Targets (issue 3): peak RSS < 1.5 GB, wall time <= 1.5x raw h5py, window read < 100 ms.
The cost of the Fletcher32 chunk checksum (mimic_nwb.storage.COMPRESSION) is measured by a third
writer, raw h5py without it, and the integrity check (`mimic_nwb.storage.verify_datasets`, which
`inspect` and `publish` run) by reading every dataset of the session once.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

RATE = 50.0
BLOCK = 3000  # rows generated at a time (one minute of frames)
SERIES = {  # name: (columns, dtype)
    "qpos": (74, "float64"),
    "qvel": (73, "float64"),
    "actuator_controls": (38, "float64"),
    "actuator_forces": (38, "float64"),
    "activations": (3000, "float16"),
}
NUM_KEYPOINTS = 23


def blocks(num_frames, columns, dtype, seed):
    """Smooth signals with noise, block by block (what recorded/simulated data compress like)."""
    rng = np.random.default_rng(seed)
    freqs = rng.uniform(0.1, 3.0, size=columns)
    phases = rng.uniform(0, 2 * np.pi, size=columns)
    for start in range(0, num_frames, BLOCK):
        t = np.arange(start, min(start + BLOCK, num_frames))[:, None] / RATE
        block = np.sin(2 * np.pi * freqs * t + phases) + 0.01 * rng.standard_normal((len(t), columns))
        yield block.astype(dtype)


def keypoint_blocks(num_frames, k):
    for block in blocks(num_frames, 3, "float64", seed=100 + k):
        yield 0.1 * block


def all_arrays(num_frames):
    """(name, shape, dtype, block generator) of every series, in writing order."""
    items = [
        (f"keypoint_{k}", (num_frames, 3), "float64", keypoint_blocks(num_frames, k)) for k in range(NUM_KEYPOINTS)
    ]
    for i, (name, (columns, dtype)) in enumerate(SERIES.items()):
        items.append((name, (num_frames, columns), dtype, blocks(num_frames, columns, dtype, seed=i)))
    return items


def write_raw(path, num_frames, checksum=True):
    from mimic_nwb.storage import COMPRESSION, chunk_shape

    settings = dict(COMPRESSION) if checksum else {k: v for k, v in COMPRESSION.items() if k != "fletcher32"}
    with h5py.File(path, "w") as f:
        for name, shape, dtype, gen in all_arrays(num_frames):
            dataset = f.create_dataset(
                name, shape=shape, dtype=dtype, chunks=chunk_shape(shape, np.dtype(dtype).itemsize), **settings
            )
            row = 0
            for block in gen:
                dataset[row : row + len(block)] = block
                row += len(block)


def write_nwb(path, num_frames):
    from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.file import Subject

    from mimic_nwb.storage import streamed
    from ndx_mimic import BodyModel, JointStateSeries, LayerActivations, NetworkActivations, SimulationRollout
    from ndx_mimic.testing.mock import mock_ControllerNetwork, mock_RolloutEpisodes

    nwbfile = NWBFile(
        session_description="synthetic 1-hour session (benchmark)",
        identifier="write-bench",
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
        subject=Subject(subject_id="bench", species="Rattus norvegicus", sex="U", age="P90D"),
    )
    arrays = {name: (shape, dtype, gen) for name, shape, dtype, gen in all_arrays(num_frames)}
    timing = dict(rate=RATE, starting_time=0.0)
    names = [f"kp{k}" for k in range(NUM_KEYPOINTS)]
    behavior = nwbfile.create_processing_module("behavior", "keypoints")
    skeleton = Skeleton(name="skeleton", nodes=names)
    behavior.add(Skeletons(skeletons=[skeleton]))
    behavior.add(
        PoseEstimation(
            pose_estimation_series=[
                PoseEstimationSeries(
                    name=name,
                    data=streamed(arrays[f"keypoint_{k}"][2], *arrays[f"keypoint_{k}"][:2]),
                    unit="meters",
                    reference_frame="arena",
                    description="synthetic",
                    **timing,
                )
                for k, name in enumerate(names)
            ],
            skeleton=skeleton,
            source_software="synthetic",
        )
    )
    column = {key: [f"{key}_{i}" for i in range(SERIES[key][0])] for key in ("qpos", "qvel", "actuator_controls")}
    body_model = BodyModel(
        mjcf="<mujoco/>",
        model_name="synthetic",
        scale=1.0,
        actuator_kind="torque",
        timestep=0.002,
        mujoco_version="n/a",
        qpos_names=column["qpos"],
        qvel_names=column["qvel"],
        actuator_names=column["actuator_controls"],
        body_names=["world"],
    )

    def joint_series(name, names):
        shape, dtype, gen = arrays[name]
        return JointStateSeries(
            name=name,
            data=streamed(gen, shape, dtype),
            unit="dimensionless",
            column_names=names,
            body_model=body_model,
            description="synthetic",
            **timing,
        )

    rollout = SimulationRollout(
        name="SimulationRollout_bench",
        mode="closed_loop",
        physics_timestep=0.002,
        control_timestep=1 / RATE,
        qpos=joint_series("qpos", column["qpos"]),
        qvel=joint_series("qvel", column["qvel"]),
        actuator_controls=joint_series("actuator_controls", column["actuator_controls"]),
        actuator_forces=joint_series("actuator_forces", column["actuator_controls"]),
        episodes=mock_RolloutEpisodes(),
        body_model=body_model,
    )
    controller = mock_ControllerNetwork(with_weights=False)
    shape, dtype, gen = arrays["activations"]
    activations = NetworkActivations(
        name="NetworkActivations_bench",
        layer_activations=[
            LayerActivations(
                name="encoder_0",
                data=streamed(gen, shape, dtype),
                layer_kind="encoder",
                description="synthetic",
                **timing,
            )
        ],
        controller=controller,
        rollout=rollout,
    )
    mimic = nwbfile.create_processing_module("mimic", "results")
    for obj in (body_model, controller, rollout, activations):
        mimic.add(obj)
    # Written like a session append's working copy (mimic_nwb.session._working_copy): without a raw-data
    # chunk cache, so the streamed blocks' alignment to chunks (storage.BlockIterator) is what is measured.
    with NWBHDF5IO(mode="w", file=h5py.File(path, "w", rdcc_nbytes=0)) as io:
        io.write(nwbfile)


def child(mode, path, num_frames):
    """Run one writer in this process; print wall time and peak RSS as JSON."""
    start = time.perf_counter()
    if mode == "nwb":
        write_nwb(path, num_frames)
    else:
        write_raw(path, num_frames, checksum=mode == "raw")
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # CPU time as well as wall time: on a shared machine the wall time varies with the load.
    print(json.dumps(dict(wall=wall, cpu=usage.ru_utime + usage.ru_stime, peak_mb=usage.ru_maxrss / 1024)))


def run_child(mode, path, num_frames):
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--path", str(path), "--frames", str(num_frames)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def checksum_cost(folder, num_frames, repeats=3):
    """Best-of-``repeats`` write time of the largest series with and without Fletcher32, alternated.

    The separate writer processes above differ by more than the checksum's cost on a shared
    machine; alternating the two settings on the same in-memory array isolates it.
    """
    from mimic_nwb.storage import COMPRESSION, chunk_shape

    columns, dtype = SERIES["activations"]
    data = np.concatenate(list(blocks(num_frames, columns, dtype, seed=0)))
    times = {True: [], False: []}
    for _ in range(repeats):
        for checksum in (False, True):
            settings = dict(COMPRESSION, fletcher32=checksum)
            path = folder / f"checksum_{checksum}.h5"
            t0 = time.perf_counter()
            with h5py.File(path, "w") as f:
                f.create_dataset("x", data=data, chunks=chunk_shape(data.shape, data.itemsize), **settings)
            times[checksum].append(time.perf_counter() - t0)
            path.unlink()
    return min(times[False]), min(times[True]), data.nbytes


def time_window_reads(path, seconds=10.0):
    from pynwb import NWBHDF5IO
    from pynwb.base import TimeSeries

    import ndx_mimic  # noqa: F401

    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        series = [obj for obj in nwbfile.objects.values() if isinstance(obj, TimeSeries)]
        n = len(series[0].data)
        start = n // 2
        stop = start + int(seconds * RATE)
        t0 = time.perf_counter()
        total = sum(np.asarray(s.data[start:stop]).nbytes for s in series)
        elapsed = time.perf_counter() - t0
    return elapsed, len(series), total


def time_safe_append(path):
    from mimic_nwb.session import append
    from ndx_mimic.testing.mock import mock_BinnedSpikeCounts

    t0 = time.perf_counter()
    with append(path) as session:
        session.add(mock_BinnedSpikeCounts(num_bins=500, num_units=5))
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None, help="folder for the files (default: a temp folder)")
    parser.add_argument("--child", choices=["raw", "raw-no-checksum", "nwb"], help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.path, args.frames)

    num_frames = int(args.minutes * 60 * RATE)
    folder = args.out or Path(tempfile.mkdtemp(prefix="write_bench_"))
    folder.mkdir(parents=True, exist_ok=True)
    raw_bytes = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for _, shape, dtype, _ in all_arrays(num_frames))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; threads pinned to 1")
    print(f"session: {args.minutes:g} min at {RATE:g} Hz = {num_frames} frames, {raw_bytes / 1e6:.0f} MB uncompressed")
    plain = run_child("raw-no-checksum", folder / "raw_plain.h5", num_frames)
    raw = run_child("raw", folder / "raw.h5", num_frames)
    nwb = run_child("nwb", folder / "session.nwb", num_frames)
    size_plain = (folder / "raw_plain.h5").stat().st_size
    size_raw = (folder / "raw.h5").stat().st_size
    size_nwb = (folder / "session.nwb").stat().st_size
    print(f"{'writer':<34}{'wall s':>9}{'cpu s':>9}{'MB/s':>9}{'peak RSS MB':>13}{'file MB':>10}")
    for label, result, size in [
        ("raw h5py, no checksum", plain, size_plain),
        ("raw h5py + fletcher32 (baseline)", raw, size_raw),
        ("mimic_nwb streaming", nwb, size_nwb),
    ]:
        print(
            f"{label:<34}{result['wall']:>9.1f}{result['cpu']:>9.1f}{raw_bytes / 1e6 / result['wall']:>9.1f}"
            f"{result['peak_mb']:>13.0f}{size / 1e6:>10.0f}"
        )
    ratio = nwb["wall"] / raw["wall"]
    print(
        f"wall-time ratio nwb/raw: {ratio:.2f} (target <= 1.5), CPU-time ratio {nwb['cpu'] / raw['cpu']:.2f}; "
        f"peak RSS {nwb['peak_mb']:.0f} MB (target < 1500)"
    )
    print(
        f"Fletcher32 checksum: write time x{raw['wall'] / plain['wall']:.3f}, "
        f"file size {size_raw - size_plain:+d} bytes ({(size_raw - size_plain) / size_plain * 100:+.3f} %)"
    )
    plain_s, checked_s, nbytes = checksum_cost(folder, num_frames)
    print(
        f"Fletcher32 on the activations alone ({nbytes / 1e6:.0f} MB), best of 3 alternated: "
        f"{plain_s:.2f} s without, {checked_s:.2f} s with (x{checked_s / plain_s:.3f})"
    )
    from mimic_nwb.storage import verify_datasets

    t0 = time.perf_counter()
    problems = verify_datasets(folder / "session.nwb")
    verify_s = time.perf_counter() - t0
    print(
        f"integrity check (read every dataset once, chunk by chunk): {verify_s:.1f} s, "
        f"{raw_bytes / 1e6 / verify_s:.0f} MB/s of data, {len(problems)} problem(s)"
    )
    elapsed, count, nbytes = time_window_reads(folder / "session.nwb")
    print(f"10-s window of all {count} series: {elapsed * 1000:.1f} ms, {nbytes / 1e6:.1f} MB (target < 100 ms)")
    append_s = time_safe_append(folder / "session.nwb")
    print(
        f"crash-safe append of a small result to the {size_nwb / 1e6:.0f} MB file: {append_s:.1f} s "
        f"({size_nwb / 1e6 / append_s:.0f} MB/s: the cost is one copy of the file)"
    )
    if args.out is None:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
