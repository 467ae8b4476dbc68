"""mimic-nwb render: stills, MP4 and PNG folders of the mock session and of a real-rat registration (OSMesa, CPU)."""

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")  # before MuJoCo's first import in this process

import imageio.v2 as imageio
import mujoco
import numpy as np
import pytest
import scipy.io
from pynwb import NWBHDF5IO

import mimic_nwb
from mimic_nwb.cli import main
from mimic_nwb.data import data_path
from mimic_nwb.errors import InputError
from mimic_nwb.importers.keypoints import KeypointImportConfig, import_keypoints
from mimic_nwb.render import RenderConfig, RenderResult, nearest_rows, parse_frames, render, session_tracks
from mimic_nwb.session import read_session
from mimic_nwb.stac import StacConfig
from mimic_nwb.stac.nwb import stac
from ndx_mimic.testing.mock import mock_session

from helpers import new_session

FAST = StacConfig(n_workers=1, n_calibration_frames=40, n_calibration_rounds=2)


@pytest.fixture(scope="module")
def mock_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("mock") / "mock.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(mock_session())
    return path


@pytest.fixture(scope="module")
def rat_file(tmp_path_factory):
    """A real-rat session: the first 100 frames of the clip registered with STAC."""
    folder = tmp_path_factory.mktemp("rat")
    clip = folder / "clip100.mat"
    scipy.io.savemat(clip, {"pred": scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"][:100]})
    path = new_session(folder)
    import_keypoints(path, clip, KeypointImportConfig(skeleton="rat23", rate=50))
    stac(path, FAST)
    return path


def _magenta(picture):
    """Mask of the keypoint spheres' colour (red and blue high, green low)."""
    r, g, b = (picture[..., i].astype(int) for i in range(3))
    return (r > 170) & (b > 140) & (g < 90)


def _tan(picture):
    """Mask of the registered body's colour."""
    r, g, b = (picture[..., i].astype(int) for i in range(3))
    return (r > 90) & (r > b + 25) & (g > b)


def test_still_of_a_real_rat_registration(rat_file, tmp_path):
    out = tmp_path / "rat.png"
    result = render(rat_file, out, RenderConfig(frames="50", width=320, height=240))
    assert isinstance(result, RenderResult) and (result.kind, result.frames, result.out) == ("png", (50,), out)
    assert "frame 50" in result.summary()
    picture = imageio.imread(out)
    assert picture.shape == (240, 320, 3)
    assert picture.std() > 10  # not blank
    keypoints, body = _magenta(picture), _tan(picture)
    assert keypoints.sum() > 30 and body.sum() > 300
    # the measured keypoints lie on the body (same place in the picture), not beside it
    centre = lambda mask: np.argwhere(mask).mean(axis=0)  # noqa: E731
    assert np.linalg.norm(centre(keypoints) - centre(body)) < 30


def test_keypoints_are_drawn_in_the_model_frame(rat_file):
    """Measured keypoints moved by world_to_model land on the model's keypoint sites (STAC error, mm)."""
    with read_session(rat_file) as nwbfile:
        (track,) = session_tracks(nwbfile, rat_file)
        registration = nwbfile.processing["mimic"]["StacRegistration"]
        frames = np.arange(0, 100, 10)
        qpos, keypoints = track.read(frames)
        model, data = track.model, mujoco.MjData(track.model)
        site_ids = [model.site(f"keypoint_{k}").id for k in registration.keypoint_names]
        distances = []
        for q, points in zip(qpos, keypoints):
            data.qpos[:] = q
            mujoco.mj_kinematics(model, data)
            distances.append(np.linalg.norm(data.site_xpos[site_ids] - points, axis=1))
        assert np.nanmean(distances) == pytest.approx(registration.mean_error, rel=0.3)
        assert np.nanmean(distances) < 0.004


def test_mp4_has_the_requested_frames(rat_file, tmp_path):
    out = tmp_path / "rat.mp4"
    render(rat_file, out, RenderConfig(frames="10:22", width=160, height=120, fps=25))
    reader = imageio.get_reader(out, format="FFMPEG")
    try:
        frames = [frame for frame in reader]
        assert reader.get_meta_data()["fps"] == pytest.approx(25)
    finally:
        reader.close()
    assert len(frames) == 12
    assert all(frame.shape == (120, 160, 3) for frame in frames)
    assert frames[0].std() > 10
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file became the video


def test_rollout_beside_its_reference(mock_file, tmp_path):
    out = tmp_path / "rollout.png"
    result = render(mock_file, out, RenderConfig(width=320, height=160), rollout="SimulationRollout_closed_loop")
    assert "beside" in result.summary() and len(result.views) == 2
    picture = imageio.imread(out).astype(int)
    assert picture.shape == (160, 320, 3)
    left, right = picture[:, :160], picture[:, 160:]
    # the rollout's body is drawn blue, the reference's tan: each viewport shows its own body
    blue = lambda x: (x[..., 2] > x[..., 0] + 25) & (x[..., 2] > 80)  # noqa: E731
    assert blue(left).sum() > 500 and blue(right).sum() == 0
    assert _tan(right).sum() > 500 and _tan(left).sum() == 0
    assert _magenta(right).sum() > 0  # the reference's keypoints


def test_mock_registration_still_and_folder(mock_file, tmp_path):
    still = tmp_path / "mock.png"
    render(mock_file, still, RenderConfig(width=200, height=150))
    picture = imageio.imread(still)
    assert picture.shape == (150, 200, 3) and picture.std() > 10
    assert _magenta(picture).sum() > 0
    folder = tmp_path / "frames"
    with mimic_nwb.open(mock_file) as session:  # a Session read-only: render writes nothing to it
        summary = render(session, folder, RenderConfig(frames="3:6", width=64, height=48)).summary()
    assert "3 PNG frames" in summary
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000003.png", "frame_000004.png", "frame_000005.png"]
    assert imageio.imread(folder / "frame_000004.png").shape == (48, 64, 3)


def test_frames_and_time_matching():
    assert list(parse_frames(None, 4)) == [0, 1, 2, 3]
    assert list(parse_frames(None, 4, still=True)) == [0]
    assert list(parse_frames("1:3", 10)) == [1, 2]
    assert list(parse_frames(":2", 10)) == [0, 1]
    assert list(parse_frames("7:", 10)) == [7, 8, 9]
    assert list(parse_frames("5", 10)) == [5]
    assert list(parse_frames("2:8", 10, still=True)) == [2]
    for bad in ("5:2", "0:11", "-1:3", "a:b", "10", ""):
        with pytest.raises(InputError, match="--frames"):
            parse_frames(bad, 10)
    np.testing.assert_array_equal(nearest_rows([0.0, 0.02, 0.04], [0.0, 0.011, 0.029, 0.5, -1]), [0, 1, 1, 2, 0])


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["--out", "{tmp}/a.png", "--rollout", "nope"],
            "no SimulationRollout named 'nope' in processing/mimic (found: SimulationRollout_closed_loop)",
        ),
        (["--out", "{tmp}/a.png", "--registration", "nope"], "no StacRegistration named 'nope'"),
        (["--out", "{tmp}/a.mp4", "--frames", "90:120"], "--frames '90:120': outside the 100 frames"),
        (["--out", "{tmp}/a.mp4", "--frames", "x"], "--frames 'x': expected START:STOP"),
        (["--out", "{tmp}/missing/a.mp4"], "does not exist"),
        (["--out", "{tmp}/missing/frames"], "does not exist"),
        (["--out", "{tmp}/a.gif"], "expected a .png still, an .mp4 video or a folder"),
        (["--out", "{tmp}/a.mp4", "--width", "321"], "needs even sizes"),
        (["--out", "{tmp}/a.png", "--width", "0"], "width 0: expected 16 to 4096 pixels"),
    ],
)
def test_bad_inputs_exit_2_and_write_nothing(mock_file, tmp_path, capsys, arguments, message):
    arguments = [a.format(tmp=tmp_path) for a in arguments]
    assert main(["render", str(mock_file), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mimic-nwb: error: ") and err.count("\n") == 1
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_session_without_registration(tmp_path, capsys):
    path = new_session(tmp_path)
    before = sorted(tmp_path.iterdir())
    assert main(["render", str(path), "--out", str(tmp_path / "still.png")]) == 2
    err = capsys.readouterr().err
    assert "no StacRegistration in processing/mimic" in err and err.count("\n") == 1
    assert main(["render", str(path), "--out", str(tmp_path / "still.png"), "--rollout", "r"]) == 2
    assert "no SimulationRollout" in capsys.readouterr().err
    assert sorted(tmp_path.iterdir()) == before
