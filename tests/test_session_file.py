"""A whole session file: HDF5 round trip, pynwb validation, nwbinspector, reading without ndx_mimic."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from pynwb import NWBHDF5IO, validate
from pynwb.testing import TestCase

import ndx_mimic  # noqa: F401
from ndx_mimic.testing.mock import LAYERS, mock_session, toy_qpos

MIMIC_OBJECTS = [
    "BodyModel",
    "StacRegistration",
    "ControllerNetwork",
    "SimulationRollout_closed_loop",
    "NetworkActivations_closed_loop",
    "EncodingResults",
    "RepresentationalSimilarity",
]


@pytest.fixture(scope="module", params=[False, True], ids=["units", "binned_counts"])
def session(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("session") / "session.nwb"
    nwbfile = mock_session(with_counts=request.param)
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    return nwbfile, path


def test_every_object_round_trips(session):
    written, path = session
    checker = TestCase()
    checker.maxDiff = None
    with NWBHDF5IO(path, "r") as io:
        read = io.read()
        for name in MIMIC_OBJECTS:
            checker.assertContainerEqual(written.processing["mimic"][name], read.processing["mimic"][name])
        checker.assertContainerEqual(
            written.processing["behavior"]["PoseEstimation"], read.processing["behavior"]["PoseEstimation"]
        )
        checker.assertContainerEqual(written.units, read.units)
        layer = read.processing["mimic"]["NetworkActivations_closed_loop"].layer_activations["encoder_0"]
        assert layer.data.dtype == np.float16  # kept as written
        stac = read.processing["mimic"]["StacRegistration"]
        assert stac.pose_estimation is read.processing["behavior"]["PoseEstimation"]
        assert stac.body_model is read.processing["mimic"]["BodyModel"]
        rollout = read.processing["mimic"]["SimulationRollout_closed_loop"]
        assert rollout.reference is stac
        assert rollout.controller is read.processing["mimic"]["ControllerNetwork"]


def test_encoding_results_reference_units_or_count_columns(session):
    written, path = session
    with NWBHDF5IO(path, "r") as io:
        mimic = io.read().processing["mimic"]
        table = mimic["EncodingResults"].to_dataframe(index=True)
        assert len(table) == 12
        if "BinnedSpikeCounts" in mimic.data_interfaces:
            assert mimic["EncodingResults"].spike_counts is mimic["BinnedSpikeCounts"]
            assert sorted(table["count_column"].unique()) == [0, 1, 2]
        else:
            assert sorted(table["unit"].unique()) == [0, 1, 2]


def test_file_validates(session):
    _, path = session
    assert validate(path=str(path)) == []


def test_nwbinspector_finds_nothing_important(session):
    nwbinspector = pytest.importorskip("nwbinspector")
    import ndx_mimic.inspector_checks  # noqa: F401

    messages = list(nwbinspector.inspect_nwbfile(nwbfile_path=str(session[1])))
    important = [m for m in messages if m.importance.value >= nwbinspector.Importance.BEST_PRACTICE_VIOLATION.value]
    assert important == []
    # The only remaining suggestion is the module name 'mimic' (see README).
    assert {m.check_function_name for m in messages} <= {"check_processing_module_name"}


READ_WITHOUT_EXTENSIONS = textwrap.dedent(
    """
    import json, sys
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("ndx_mimic", "ndx_pose"):
                raise ImportError(f"{name} is blocked in this test")
    sys.meta_path.insert(0, Block())
    from pynwb import NWBHDF5IO
    with NWBHDF5IO(sys.argv[1], "r") as io:
        nwb = io.read()
        mimic = nwb.processing["mimic"]
        stac = mimic["StacRegistration"]
        acts = mimic["NetworkActivations_closed_loop"]
        out = dict(
            modules=sorted(m for m in sys.modules if m.startswith(("ndx_mimic", "ndx_pose"))),
            stac_type=type(stac).__name__,
            qpos=stac.qpos.data[:].tolist(),
            qpos_names=[str(n) for n in stac.qpos.column_names[:]],
            layers={n: [str(l.data.dtype), list(l.data.shape), l.layer_kind] for n, l in acts.layer_activations.items()},
            mjcf=mimic["BodyModel"].mjcf,
            body_model_linked=stac.body_model is mimic["BodyModel"],
            keypoints=sorted(stac.model_keypoints.pose_estimation_series),
            rdms=mimic["RepresentationalSimilarity"].rdms[:].tolist(),
        )
    print(json.dumps(out))
    """
)


def test_reads_with_plain_pynwb_from_cached_spec(session):
    written, path = session
    result = subprocess.run(
        [sys.executable, "-c", READ_WITHOUT_EXTENSIONS, str(path)], capture_output=True, text=True, check=True
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["modules"] == []
    assert out["stac_type"] == "StacRegistration"
    np.testing.assert_array_equal(out["qpos"], toy_qpos())
    assert out["qpos_names"][:3] == ["root_x", "root_y", "root_z"]
    assert out["layers"] == {n: ["float16", [100, size], kind] for n, (kind, size) in LAYERS.items()}
    assert out["mjcf"] == written.processing["mimic"]["BodyModel"].mjcf
    assert out["body_model_linked"] is True
    assert out["keypoints"] == ["foot", "head", "knee"]
    np.testing.assert_array_equal(out["rdms"], written.processing["mimic"]["RepresentationalSimilarity"].rdms)


def test_import_stays_light():
    code = (
        "import sys, ndx_mimic, ndx_mimic.testing.mock; "
        "print([m for m in ('mujoco', 'jax', 'flax', 'statsmodels', 'dandi', 'nwbinspector', 'dm_control') "
        "if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
