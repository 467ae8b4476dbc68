"""mimic-nwb report: one self-contained HTML page, a section per stage, figures only where the data is."""

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
import scipy.io
from PIL import Image
from pynwb import NWBHDF5IO

from mimic_nwb.cli import main
from mimic_nwb.data import data_path
from mimic_nwb.importers.keypoints import KeypointImportConfig, import_keypoints
from mimic_nwb.report import best_feature_set_shares, tracking_error, write_report
from ndx_mimic import JointStateSeries
from ndx_mimic.testing.mock import (
    TOY_QPOS_NAMES,
    TOY_QPOS_UNITS,
    mock_BodyModel,
    mock_session,
    mock_SimulationRollout,
    mock_StacRegistration,
    toy_qpos,
)

from helpers import new_session

SECTIONS = ("keypoints", "stac", "rollouts", "activations", "encoding", "rsa")
IMAGE = re.compile(r"<img alt='[^']*' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>")


def _sections(page):
    """``{section id: its HTML}``."""
    parts = re.split(r"<section id='(\w+)'>", page)[1:]
    return dict(zip(parts[::2], parts[1::2]))


@pytest.fixture(scope="module")
def mock_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    session = folder / "mock.nwb"
    with NWBHDF5IO(str(session), "w") as io_:
        io_.write(mock_session())
    out = folder / "report.html"
    assert main(["report", str(session), "--out", str(out)]) == 0
    return session, out


def test_every_section_has_embedded_png_figures(mock_report):
    _, out = mock_report
    page = out.read_text(encoding="utf-8")
    sections = _sections(page)
    assert list(sections) == list(SECTIONS)
    # rollouts: the rollout's episodes and error, the survival curve, the rendered rollout beside its reference
    expected = {"keypoints": 1, "stac": 1, "rollouts": 3, "activations": 1, "encoding": 2, "rsa": 2}
    for key, count in expected.items():
        images = IMAGE.findall(sections[key])
        assert len(images) == count, key
        for encoded in images:
            picture = Image.open(io.BytesIO(base64.b64decode(encoded)))
            assert picture.format == "PNG" and picture.width > 300 and picture.height > 100
            assert np.asarray(picture.convert("L")).std() > 5  # drawn, not blank
    assert "class='absent'" not in page


def test_page_is_self_contained_and_states_the_session(mock_report):
    session, out = mock_report
    page = out.read_text(encoding="utf-8")
    # nothing to fetch: every src is a data URI, no stylesheets or scripts from elsewhere
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r"src='([^']*)'", page))
    assert "<link" not in page and "<script" not in page and "url(" not in page
    assert "rat01: Rattus norvegicus, sex M, age P90D" in page
    assert "MIMIC session report: mock" in page
    with NWBHDF5IO(str(session), "r") as io_:
        nwbfile = io_.read()
        stac = nwbfile.processing["mimic"]["StacRegistration"]
        assert f"mean error {stac.mean_error * 1000:.2f} mm" in page
        assert "processing/mimic/SimulationRollout_closed_loop: closed_loop, 100 steps" in page
        assert "2 episodes, median duration 1.00 s" in page


def test_absent_data_is_stated(tmp_path):
    """A session with keypoints only: the keypoint traces, and one line per absent result."""
    clip = tmp_path / "clip.mat"
    scipy.io.savemat(clip, {"pred": scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"][:50]})
    session = new_session(tmp_path)
    import_keypoints(session, clip, KeypointImportConfig(skeleton="rat23", rate=50))
    out = tmp_path / "report.html"
    summary = write_report(session, out)
    assert summary.endswith("absent: stac, rollouts, activations, encoding, rsa")
    sections = _sections(out.read_text(encoding="utf-8"))
    assert len(IMAGE.findall(sections["keypoints"])) == 1
    assert "50 frames x 23 keypoints" in sections["keypoints"]
    for key, line in [
        ("stac", "No STAC registration"),
        ("rollouts", "No rollout"),
        ("activations", "No network activations"),
        ("encoding", "No encoding models"),
        ("rsa", "No representational similarity"),
    ]:
        assert line in sections[key] and not IMAGE.findall(sections[key])


def test_tracking_error_is_the_mean_body_distance():
    """A rollout shifted 1 cm along x from its reference is 10 mm off at every step."""
    body_model = mock_BodyModel()
    reference = mock_StacRegistration(body_model=body_model)
    qpos = toy_qpos()
    qpos[:, 0] += 0.01
    shifted = JointStateSeries(
        name="qpos",
        data=qpos,
        unit="mixed",
        column_names=TOY_QPOS_NAMES,
        column_units=TOY_QPOS_UNITS,
        body_model=body_model,
        rate=50.0,
        starting_time=0.0,
        description="shifted",
    )
    rollout = mock_SimulationRollout(body_model=body_model, reference=reference, qpos=shifted)
    times, errors = tracking_error(rollout)
    assert len(times) == 100
    np.testing.assert_allclose(errors, 0.01, atol=1e-12)
    _, reason = tracking_error(mock_SimulationRollout(body_model=body_model))
    assert reason == "the rollout links no reference registration"


def test_survival_figure_states_each_rollouts_median_episode():
    from mimic_nwb.report import survival_figure

    class Column:
        def __init__(self, values):
            self.data = np.asarray(values, dtype=float)

    class Rollout:  # the fields survival_figure reads from a stored SimulationRollout
        def __init__(self, name, mode, lengths, step=0.02):
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) * step
            self.name, self.mode, self.control_timestep = name, mode, step
            self.episodes = {"start_time": Column(starts), "stop_time": Column(starts + np.asarray(lengths) * step)}

    figure = survival_figure([Rollout("a", "closed_loop", [10, 10, 30, 200, 50]), Rollout("b", "expert", [1000])])
    assert "a: median episode 0.60 s" in figure.caption  # 30 frames at 50 Hz
    assert "b: median episode 20.00 s" in figure.caption
    picture = Image.open(io.BytesIO(base64.b64decode(figure.png_base64)))
    assert np.asarray(picture.convert("L")).std() > 5


def test_share_of_units_best_predicted():
    best = pd.DataFrame(
        {
            "unit": [0, 0, 1, 1, 2, 2, 3, 3],
            "brain_region": ["DLS"] * 6 + ["MC"] * 2,
            "feature_set": ["joint_angles", "layer"] * 4,
            "cv_llr": [0.1, 0.3, 0.2, 0.1, 0.5, 0.6, 0.05, 0.01],
            "significant": [True, True, True, False, False, False, True, False],
        }
    )
    shares, totals, among = best_feature_set_shares(best, has_significance=True)
    # unit 2's best model is not significant: not counted
    assert totals == {"DLS": 2, "MC": 1} and among == "units whose best model is significant"
    assert shares["DLS"] == {"joint_angles": 0.5, "layer": 0.5}
    assert shares["MC"] == {"joint_angles": 1.0, "layer": 0.0}
    shares, totals, among = best_feature_set_shares(best, has_significance=False)
    assert totals == {"DLS": 3, "MC": 1} and shares["DLS"]["layer"] == pytest.approx(2 / 3)


def test_bad_inputs_exit_2_and_write_nothing(mock_report, tmp_path, capsys):
    session, _ = mock_report
    assert main(["report", str(session), "--out", str(tmp_path / "missing" / "report.html")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1
    assert main(["report", str(session), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    not_nwb = tmp_path / "notes.nwb"
    not_nwb.write_text("not an NWB file")
    assert main(["report", str(not_nwb), "--out", str(tmp_path / "report.html")]) == 2
    assert "not an NWB file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.nwb"]
