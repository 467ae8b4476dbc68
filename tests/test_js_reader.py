"""Session files read by a reader that is not Python: h5wasm, the HDF5 library behind the web
viewers on DANDI (Node, ``tests/js/read_datasets.mjs``). Every dataset and attribute of a small
session that went through every writing stage must read, with the values h5py and pynwb read.

Network activations are stored as int16 with ``conversion`` and ``offset`` (h5wasm, like MATLAB,
has no float16): read back within the error bound each layer's description states; files written
with float16 still read in Python.

Needs Node and the npm packages of ``tests/js`` (``npm ci --prefix tests/js``, run by ``make
test``); skipped only where Node is absent.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from mimic_nwb.controller import ControllerConfig, TrainingConfig
from mimic_nwb.data import data_path
from mimic_nwb.features import read_feature_set
from mimic_nwb.importers.keypoints import KeypointImportConfig, import_keypoints
from mimic_nwb.importers.labels import LabelImportConfig, import_labels
from mimic_nwb.importers.units import UnitImportConfig, import_units
from mimic_nwb.session import read_session
from mimic_nwb.simulate import RolloutConfig
from mimic_nwb.simulate.nwb import inverse_dynamics, simulate, train_controller
from mimic_nwb.stac import StacConfig
from mimic_nwb.stac.nwb import stac
from mimic_nwb.storage import quantized

from helpers import new_session

JS = Path(__file__).parent / "js"
BACK_COMPAT = Path(__file__).parent / "back_compat" / "ndx-mimic_0.1.0.nwb"
NODE = shutil.which("node")

needs_node = pytest.mark.skipif(NODE is None, reason="Node.js is not installed")


def read_with_h5wasm(path, tmp_path):
    if not (JS / "node_modules" / "h5wasm").is_dir():
        pytest.fail(f"h5wasm is not installed: run `npm ci --prefix {JS}` (make test does)")
    out = tmp_path / f"{Path(path).stem}.json"
    done = subprocess.run(
        [NODE, str(JS / "read_datasets.mjs"), str(path), str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Keypoints, units, labels, a registration, an inverse-dynamics rollout, a controller and a
    closed-loop rollout with its activations: every kind of data the stages write."""
    folder = tmp_path_factory.mktemp("js")
    pred = scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"][:100]
    scipy.io.savemat(folder / "clip.mat", {"pred": pred})
    path = new_session(folder)
    import_keypoints(path, folder / "clip.mat", KeypointImportConfig(skeleton="rat23", rate=50.0))
    rng = np.random.default_rng(0)
    spikes = {f"unit{i}": np.sort(rng.uniform(0, 1.9, 30)) for i in range(3)}
    regions = {n: {"brain_region": "DLS"} for n in spikes}
    import_units(path, spikes, UnitImportConfig(sampling_rate=30000.0, unit_table=regions))
    import_labels(path, np.repeat(["Walk", "Rear"], 50), LabelImportConfig(rate=50.0))
    stac(path, StacConfig(n_workers=1, n_calibration_frames=20, n_calibration_rounds=1))
    inverse_dynamics(path)
    small = ControllerConfig(encoder_sizes=(16,), latent_size=4, decoder_sizes=(8,))
    train_controller(path, folder / "controller.npz", small, training=TrainingConfig(steps=2))
    rolled = simulate(path, RolloutConfig(n_frames=40, resample_latent=True, latent_samples=2))
    return path, rolled.result.activations


def _as_python(value):
    """h5wasm's JSON value as numbers (NaN and infinities come as strings)."""
    if isinstance(value, list):
        return [_as_python(v) for v in value]
    if isinstance(value, dict):
        return [_as_python(v) for v in value.values()]
    if value in ("NaN", "Infinity", "-Infinity"):
        return float(value.replace("Infinity", "inf"))
    return value


def _h5py_value(value):
    """What h5py reads, in the shapes and types the JSON holds."""
    if isinstance(value, h5py.Reference):
        return "<reference>"
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        if value.dtype.names:
            return [_h5py_value(row) for row in value.tolist()]
        if value.dtype.kind in "OSU":
            return [_h5py_value(v) for v in value.tolist()]
        return value
    if isinstance(value, tuple):
        return [_h5py_value(v) for v in value]
    if isinstance(value, list):
        return [_h5py_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _same(js, py, where):
    js, py = _as_python(js), _h5py_value(py)
    if isinstance(py, np.ndarray):
        # Scalars come as one-element lists for references; numbers compare exactly (JSON keeps
        # every float64 and int32 digit).
        np.testing.assert_array_equal(
            np.asarray(js, dtype=py.dtype if py.dtype.kind != "b" else float).reshape(py.shape),
            py.astype(float) if py.dtype.kind == "b" else py,
            err_msg=where,
        )
    elif isinstance(py, list):
        flat_js = js if isinstance(js, list) else [js]
        assert len(flat_js) == len(py), where
        for i, (a, b) in enumerate(zip(flat_js, py)):
            _same(a, b, f"{where}[{i}]")
    elif py == "<reference>":
        assert js in ("<reference>", ["<reference>"]), where
    elif isinstance(py, float):
        assert (np.isnan(py) and np.isnan(js)) or js == py, where
    else:
        assert js == py, f"{where}: h5wasm read {js!r}, h5py {py!r}"


@needs_node
def test_every_dataset_reads_with_h5wasm(session, tmp_path):
    path, _ = session
    read = read_with_h5wasm(path, tmp_path)
    assert read["errors"] == {}
    with h5py.File(path, "r") as f:
        datasets, attributes = {}, {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                datasets["/" + name] = obj
            for key in obj.attrs:
                attributes[f"/{name}@{key}"] = obj.attrs[key]

        for key in f.attrs:
            attributes[f"/@{key}"] = f.attrs[key]
        f.visititems(visit)  # hard links only, each object once: what the Node script walks
        assert set(read["datasets"]) == set(datasets)
        assert set(read["attributes"]) == set(attributes)
        assert "/processing/mimic/NetworkActivations_closed_loop/encoder_0/data" in datasets
        for path, dataset in datasets.items():
            entry = read["datasets"][path]
            assert (entry["shape"] or []) == list(dataset.shape), path
            _same(entry["value"], dataset[()], path)
        for key, value in attributes.items():
            _same(read["attributes"][key], value, key)


@needs_node
def test_activations_read_by_h5wasm_equal_pynwb_within_the_stated_bound(session, tmp_path):
    path, computed = session
    read = read_with_h5wasm(path, tmp_path)
    with read_session(path) as nwbfile:
        activations = nwbfile.processing["mimic"]["NetworkActivations_closed_loop"]
        assert set(activations.layer_activations) == set(computed) and len(computed) >= 5
        for name, layer in activations.layer_activations.items():
            where = f"/processing/mimic/NetworkActivations_closed_loop/{name}/data"
            assert layer.data.dtype == np.int16
            entry = read["datasets"][where]  # values in C order, flat
            codes = np.asarray(entry["value"], dtype=np.float64).reshape(entry["shape"])
            in_units = codes * read["attributes"][f"{where}@conversion"] + read["attributes"][f"{where}@offset"]
            from_pynwb = layer.get_data_in_units()
            np.testing.assert_array_equal(in_units, from_pynwb)
            assert read["attributes"][f"{where}@resolution"] == layer.conversion
            # Within the bound the description states of the values the network computed.
            bound = float(re.search(r"absolute error at most ([0-9.e+-]+)", layer.description).group(1))
            assert np.abs(from_pynwb - computed[name]).max() <= bound * 1.001
            feature = read_feature_set(nwbfile, f"NetworkActivations_closed_loop/{name}")
            np.testing.assert_array_equal(feature.values, from_pynwb)


def test_quantization_error_is_within_the_stated_bound():
    rng = np.random.default_rng(1)
    for values in (
        rng.normal(0.3, 2.0, (500, 7)),
        np.tanh(rng.normal(0, 3, (500, 4))),
        np.full((10, 3), -0.25),
        1e4 + rng.uniform(0, 1e-3, (50, 2)),
    ):
        args = quantized(values, "layer.")
        data = args["data"].data
        assert data.dtype == np.int16 and args["resolution"] == args["conversion"] > 0
        bound = float(re.search(r"absolute error at most ([0-9.e+-]+)", args["description"]).group(1))
        # As pynwb computes it (float64) and as a float32 reader does.
        error64 = np.abs(data * args["conversion"] + args["offset"] - values).max()
        c32, o32 = np.float32(args["conversion"]), np.float32(args["offset"])
        error32 = np.abs((data * c32 + o32).astype(np.float64) - values).max()
        assert error64 <= bound * 1.001 and error32 <= bound * 1.001
        assert float(c32) == args["conversion"] and float(o32) == args["offset"]  # NWB's float32 attributes
    with_nan = quantized(np.array([[0.0, np.nan]]), "layer.")
    assert with_nan["data"].data.dtype == np.float32 and "conversion" not in with_nan


def test_float16_files_still_read(tmp_path):
    # Written by 0.1.0 with float16 activations: Python reads them as before; h5wasm cannot,
    # which is why new files hold int16 codes.
    with read_session(BACK_COMPAT) as nwbfile:
        layer = nwbfile.processing["mimic"]["NetworkActivations_closed_loop"].layer_activations["encoder_0"]
        assert layer.data.dtype == np.float16
        feature = read_feature_set(nwbfile, "NetworkActivations_closed_loop/encoder_0")
        np.testing.assert_array_equal(feature.values, layer.data[:].astype(np.float64))
    if NODE is not None:
        errors = read_with_h5wasm(BACK_COMPAT, tmp_path)["errors"]
        assert errors and all("Float16" in message for message in errors.values())
        assert any(path.endswith("encoder_0/data") for path in errors)
