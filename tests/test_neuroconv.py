"""NeuroConv interfaces (mimic_nwb.neuroconv) inside an NWBConverter with NeuroConv's Phy interface.

A phy folder (spike_times.npy, spike_clusters.npy, params.py, cluster_group.tsv) and DANNCE
predictions (a trimmed copy of the rat23 clip, with p_max and sampleID as DANNCE writes them) are
converted together; the file then goes through ``mimic-nwb stac``. A stac-mjx output made from
poses of the real rodent model (tests/test_import_foreign.py) is converted beside DANNCE
predictions of its own keypoints, and its registration must link them and keep its numbers.
"""

import numpy as np
import pytest
import scipy.io

pytest.importorskip("neuroconv")
pytest.importorskip("spikeinterface")  # NeuroConv's Phy interface reads the folder through it

from neuroconv import NWBConverter  # noqa: E402
from neuroconv.datainterfaces import PhySortingInterface  # noqa: E402
from pynwb import NWBHDF5IO, validate  # noqa: E402
from test_import_foreign import RAT23, SITE_MAP, smooth_qpos, stac_mjx_datasets, write_h5  # noqa: E402

import mimic_nwb  # noqa: E402
from mimic_nwb.body_model import build_body_model  # noqa: E402
from mimic_nwb.cli import main  # noqa: E402
from mimic_nwb.data import data_path  # noqa: E402
from mimic_nwb.errors import InputError  # noqa: E402
from mimic_nwb.importers.keypoints import load_skeleton  # noqa: E402
from mimic_nwb.inspection import inspect_session  # noqa: E402
from mimic_nwb.neuroconv import KEYPOINTS_METADATA, REGISTRATION_METADATA, DannceInterface, StacMjxInterface  # noqa: E402
from ndx_mimic import StacRegistration  # noqa: E402
from ndx_mimic.mimic import pose_as_array  # noqa: E402

SAMPLE_RATE = 30000.0  # phy params.py, Hz
CAMERA_RATE = 100.0  # Hz; the DANNCE clip keeps every 2nd camera frame
NUM_FRAMES = 100  # STAC needs as many frames as the widest series it writes (74 qpos)
START = "2024-03-01T10:00:00+00:00"


def write_phy(folder, rng):
    """A phy folder as Kilosort/phy write it: spike times in samples, clusters, groups, params."""
    folder.mkdir()
    times = np.sort(rng.integers(0, int(2 * SAMPLE_RATE), 400)).astype(np.uint64)
    clusters = rng.integers(0, 4, times.size).astype(np.int32)
    np.save(folder / "spike_times.npy", times)
    np.save(folder / "spike_clusters.npy", clusters)
    (folder / "params.py").write_text(
        "dat_path = 'recording.dat'\nn_channels_dat = 4\ndtype = 'int16'\noffset = 0\n"
        f"sample_rate = {SAMPLE_RATE}\nhp_filtered = True\n"
    )
    (folder / "cluster_group.tsv").write_text("cluster_id\tgroup\n0\tgood\n1\tgood\n2\tmua\n3\tnoise\n")
    return folder, times / SAMPLE_RATE, clusters


def write_dannce(path, pred_mm, sample_ids, p_max=None):
    """A DANNCE save_data_AVG.mat: pred (N, 3, K) mm, sampleID (N,), p_max (N, K)."""
    content = {"pred": pred_mm, "sampleID": sample_ids.astype(np.float64)}
    if p_max is not None:
        content["p_max"] = p_max
    scipy.io.savemat(str(path), content)
    return path


@pytest.fixture(scope="module")
def clip():
    """(pred (N, 3, 23) mm, sampleID, p_max) of the first NUM_FRAMES frames of the rat23 clip."""
    pred = scipy.io.loadmat(str(data_path("rat23_dannce_clip_1000.mat")))["pred"][:NUM_FRAMES]
    sample_ids = 1 + 2 * np.arange(NUM_FRAMES)
    p_max = np.random.default_rng(3).uniform(0.2, 1.0, (NUM_FRAMES, pred.shape[2]))
    return pred, sample_ids, p_max


class PhyDannceConverter(NWBConverter):
    data_interface_classes = dict(Sorting=PhySortingInterface, Keypoints=DannceInterface)


def convert(converter, path):
    metadata = converter.get_metadata()
    metadata["NWBFile"]["session_start_time"] = START
    metadata["NWBFile"]["session_description"] = "phy units and DANNCE keypoints"
    metadata["Subject"] = dict(subject_id="rat-01", species="Rattus norvegicus", sex="M", age="P90D")
    converter.run_conversion(nwbfile_path=str(path), metadata=metadata, overwrite=True)
    return path


def test_phy_and_dannce_convert_then_stac(clip, tmp_path):
    pred, sample_ids, p_max = clip
    phy, spike_seconds, clusters = write_phy(tmp_path / "phy", np.random.default_rng(0))
    mat = write_dannce(tmp_path / "save_data_AVG.mat", pred, sample_ids, p_max)
    converter = PhyDannceConverter(
        dict(
            Sorting=dict(folder_path=str(phy)),
            Keypoints=dict(file_path=str(mat), skeleton=str(data_path("rat23_skeleton.mat")), rate=CAMERA_RATE),
        )
    )
    path = convert(converter, tmp_path / "session.nwb")

    with NWBHDF5IO(str(path), "r") as io:
        nwbfile = io.read()
        units = nwbfile.units.to_dataframe()
        assert sorted(units["quality"]) == ["good", "good", "mua", "noise"]
        for unit_id in range(4):
            row = units[units["unit_name"].astype(str) == str(unit_id)].iloc[0]
            np.testing.assert_allclose(row["spike_times"], np.sort(spike_seconds[clusters == unit_id]))
        pose = nwbfile.processing["behavior"]["PoseEstimation"]
        nodes = [str(n) for n in pose.skeleton.nodes[:]]
        assert nodes == load_skeleton("rat23").nodes
        # millimetres (N, 3, K) become metres (N, K, 3); p_max is the confidence
        np.testing.assert_allclose(pose_as_array(pose, nodes), np.transpose(pred, (0, 2, 1)) / 1000)
        first = pose.pose_estimation_series[nodes[0]]
        np.testing.assert_allclose(first.confidence[:], p_max[:, 0])
        # sampleID steps by 2 at the 100 Hz camera: one frame in two, 50 Hz, ids kept
        assert first.rate == pytest.approx(CAMERA_RATE / 2) and first.starting_time == 0.0
        np.testing.assert_array_equal(nwbfile.processing["behavior"]["PoseEstimation_frame_ids"].data[:], sample_ids)

    # The skeleton file's name is not a built-in one: the site map is named
    stac = ["stac", str(path), "--site-map", str(SITE_MAP), "--workers", "1", "--calibration-frames", "20"]
    assert main([*stac, "--no-progress"]) == 0
    inspection = inspect_session(path)  # pynwb validation and nwbinspector: no CRITICAL or ERROR finding
    assert inspection.ok, inspection.text
    with mimic_nwb.open(path) as session:
        registration = session.result(StacRegistration)
        assert registration.pose_estimation.object_id == session.keypoints().object_id
        assert registration.qpos.data.shape == (NUM_FRAMES, 74)
        assert registration.mean_error < 0.005  # metres: the model follows the rat
        assert len(session.units()) == 4


def test_dannce_temporal_alignment(clip, tmp_path):
    pred, sample_ids, _ = clip
    irregular = np.concatenate([[1], 1 + np.cumsum(np.where(np.arange(NUM_FRAMES - 1) % 10 == 0, 3, 1))])
    mat = write_dannce(tmp_path / "save_data_MAX.mat", pred, irregular)
    interface = DannceInterface(file_path=mat, skeleton="rat23", rate=CAMERA_RATE)
    # dropped camera frames: the times follow sampleID
    np.testing.assert_allclose(interface.get_original_timestamps(), (irregular - 1) / CAMERA_RATE)
    interface.set_aligned_starting_time(12.5)
    np.testing.assert_allclose(interface.get_timestamps(), 12.5 + (irregular - 1) / CAMERA_RATE)
    np.testing.assert_allclose(interface.get_original_timestamps(), (irregular - 1) / CAMERA_RATE)
    metadata = interface.get_metadata()
    metadata["NWBFile"]["session_start_time"] = START
    metadata[KEYPOINTS_METADATA]["DANNCE"]["name"] = "RatKeypoints"
    path = tmp_path / "aligned.nwb"
    interface.run_conversion(nwbfile_path=str(path), metadata=metadata, overwrite=True)
    with NWBHDF5IO(str(path), "r") as io:
        series = next(iter(io.read().processing["behavior"]["RatKeypoints"].pose_estimation_series.values()))
        np.testing.assert_allclose(series.timestamps[:], 12.5 + (irregular - 1) / CAMERA_RATE)

    # regular aligned times are stored as a rate and a starting time
    interface.set_aligned_timestamps(3.0 + np.arange(NUM_FRAMES) / 40.0)
    nwbfile = interface.create_nwbfile(metadata=metadata)
    series = next(iter(nwbfile.processing["behavior"]["RatKeypoints"].pose_estimation_series.values()))
    assert series.rate == pytest.approx(40.0) and series.starting_time == pytest.approx(3.0)


def test_source_schemas_describe_every_argument():
    for interface in (DannceInterface, StacMjxInterface):
        schema = interface.get_source_schema()
        assert schema["required"] == ["file_path"]
        assert all(field.get("description") for field in schema["properties"].values())
    assert "rat23" in DannceInterface.get_source_schema()["properties"]["skeleton"]["description"]


def test_dannce_bad_inputs(clip, tmp_path):
    pred, sample_ids, _ = clip
    mat = write_dannce(tmp_path / "save_data_AVG.mat", pred, sample_ids)
    with pytest.raises(InputError, match="pred has 23 keypoints but skeleton mouse22 has 22"):
        DannceInterface(file_path=mat, skeleton="mouse22", rate=CAMERA_RATE)
    with pytest.raises(InputError, match="give a skeleton or keypoint names, not both"):
        DannceInterface(file_path=mat, skeleton="rat23", keypoint_names=load_skeleton("rat23").nodes)
    interface = DannceInterface(file_path=mat, skeleton="rat23")
    with pytest.raises(InputError, match=r"give the camera frame rate \(rate=\)"):
        interface.get_original_timestamps()
    with pytest.raises(InputError, match="timestamps: not strictly increasing"):
        interface.set_aligned_timestamps(np.zeros(NUM_FRAMES))
    with pytest.raises(InputError, match="timestamps: 3 values for 100 frames"):
        interface.set_aligned_timestamps([0.0, 1.0, 2.0])
    repeated = write_dannce(tmp_path / "repeated.mat", pred, np.ones(NUM_FRAMES))
    with pytest.raises(InputError, match="sampleID repeats at frame 1"):
        DannceInterface(file_path=repeated, skeleton="rat23", rate=CAMERA_RATE).get_timestamps()


# ----------------------------------------------------------------------------------------------
# stac-mjx


STAC_FRAMES = 12


@pytest.fixture(scope="module")
def stac_mjx_files(tmp_path_factory):
    """A stac-mjx .h5 of rodent poses (alphabetical keypoints) and DANNCE predictions of its kp_data."""
    folder = tmp_path_factory.mktemp("stac_mjx")
    qpos = smooth_qpos(build_body_model(SITE_MAP), STAC_FRAMES)
    datasets = stac_mjx_datasets(qpos, sorted(RAT23))
    source = write_h5(folder / "stac.h5", datasets)
    order = [sorted(RAT23).index(k) for k in RAT23]
    kp_data = datasets["kp_data"].astype(np.float64).reshape(STAC_FRAMES, 23, 3)[:, order]  # rat23 order, metres
    pred = np.transpose(1000 * kp_data, (0, 2, 1))
    mat = write_dannce(folder / "save_data_AVG.mat", pred, np.arange(STAC_FRAMES))
    return source, mat, datasets, order


class FullConverter(NWBConverter):
    data_interface_classes = dict(Sorting=PhySortingInterface, Keypoints=DannceInterface, Registration=StacMjxInterface)


def test_stac_mjx_registration_links_dannce_keypoints(stac_mjx_files, tmp_path):
    source, mat, datasets, order = stac_mjx_files
    phy, _, _ = write_phy(tmp_path / "phy", np.random.default_rng(1))
    converter = FullConverter(
        dict(
            Sorting=dict(folder_path=str(phy)),
            Keypoints=dict(file_path=str(mat), skeleton="rat23", rate=50.0),
            Registration=dict(file_path=str(source)),
        )
    )
    metadata = converter.get_metadata()
    assert metadata[REGISTRATION_METADATA]["StacMjx"]["name"] == "StacRegistration"
    path = convert(converter, tmp_path / "session.nwb")
    assert validate(path=str(path)) == []
    with mimic_nwb.open(path) as session:
        registration = session.result(StacRegistration)
        assert registration.pose_estimation.object_id == session.keypoints().object_id
        np.testing.assert_allclose(registration.qpos.data[:], datasets["qpos"])
        assert registration.qpos.rate == 50.0
        # errors: distance between marker_sites and kp_data, keypoints in the skeleton's (rat23) order
        marker_sites = datasets["marker_sites"].astype(np.float64).reshape(STAC_FRAMES, 23, 3)[:, order]
        kp_data = datasets["kp_data"].astype(np.float64).reshape(STAC_FRAMES, 23, 3)[:, order]
        np.testing.assert_allclose(
            registration.keypoint_errors.data[:], np.linalg.norm(marker_sites - kp_data, axis=2), atol=1e-6
        )
        assert list(registration.keypoint_errors.column_names[:]) == list(RAT23)
        assert registration.body_model.scale == pytest.approx(0.9)
        assert "NeuroConv" in registration.parameters
        assert len(session.units()) == 4


def test_stac_mjx_alone_and_appended(stac_mjx_files, tmp_path):
    source, mat, datasets, _ = stac_mjx_files
    with pytest.raises(InputError, match=r"the file has no keypoints; give the frame rate \(rate=\)"):
        StacMjxInterface(file_path=source).create_nwbfile(metadata=_metadata())
    # alone: kp_data become the keypoints, on the built-in skeleton with the same names
    nwbfile = StacMjxInterface(file_path=source, rate=25.0).create_nwbfile(metadata=_metadata())
    pose = nwbfile.processing["behavior"]["PoseEstimation"]
    assert pose.skeleton.name == "rat23"
    assert nwbfile.processing["mimic"]["StacRegistration"].pose_estimation is pose

    # appended to a converted file on disk, linking its keypoints
    keypoints = DannceInterface(file_path=mat, skeleton="rat23", rate=50.0)
    path = tmp_path / "session.nwb"
    keypoints.run_conversion(nwbfile_path=str(path), metadata=_metadata(), overwrite=True)
    StacMjxInterface(file_path=source).run_conversion(nwbfile_path=str(path), append_on_disk_nwbfile=True)
    with mimic_nwb.open(path) as session:
        assert session.result(StacRegistration).pose_estimation.object_id == session.keypoints().object_id


def test_stac_mjx_other_keypoints_refused(stac_mjx_files, tmp_path):
    source, mat, _, _ = stac_mjx_files
    pred = scipy.io.loadmat(str(mat))["pred"]
    shifted = write_dannce(tmp_path / "shifted.mat", pred + 1.0, np.arange(STAC_FRAMES))  # 1 mm off
    converter = FullConverter(
        dict(
            Sorting=dict(folder_path=str(write_phy(tmp_path / "phy", np.random.default_rng(2))[0])),
            Keypoints=dict(file_path=str(shifted), skeleton="rat23", rate=50.0),
            Registration=dict(file_path=str(source)),
        )
    )
    with pytest.raises(InputError, match=r"kp_data differ from the session's PoseEstimation by up to 1\.00 mm"):
        convert(converter, tmp_path / "session.nwb")
    assert not (tmp_path / "session.nwb").exists()  # NeuroConv builds the file in memory first


def _metadata():
    return {"NWBFile": {"session_start_time": START, "session_description": "stac-mjx", "identifier": "x"}}
