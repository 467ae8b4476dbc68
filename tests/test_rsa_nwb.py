"""RSA on a session file: RDMs per brain region and feature set over behaviour labels, appended."""

import numpy as np
import pytest
from pynwb import validate

from mimic_nwb.cli import main
from mimic_nwb.errors import InputError
from mimic_nwb.importers.labels import LabelImportConfig, import_labels
from mimic_nwb.importers.units import UnitImportConfig, import_units
from mimic_nwb.rsa import nwb as rsa_nwb
from mimic_nwb.rsa.nwb import RsaConfig, RsaResult, rsa
from mimic_nwb.session import read_session

from helpers import digest, registered_toy_session

RATE = 50.0


def labelled_session(folder):
    """A registered toy session with units tuned to the hip angle and behaviour labels from it."""
    path, t, qpos = registered_toy_session(folder)
    rng = np.random.default_rng(0)
    hip = qpos[:, 7]
    # units tuned to the hip angle, so the neural RDM follows the joint-angle RDM
    spikes = {}
    for i, (gain, _region) in enumerate([(1.5, "DLS"), (-1.5, "DLS"), (1.0, "MC"), (0.5, "DLS")]):
        counts = rng.poisson(12 * np.exp(gain * hip) / RATE)
        spikes[f"u{i}"] = np.sort(np.repeat(t, counts) + rng.uniform(0, 1 / RATE, counts.sum()))
    import_units(
        path,
        spikes,
        UnitImportConfig(
            sampling_rate=30000.0,
            session_end=len(t) / RATE,
            unit_table={f"u{i}": {"brain_region": r} for i, r in enumerate(["DLS", "DLS", "MC", "DLS"])},
        ),
    )
    labels = np.where(hip > 0.4, "Reach", np.where(hip < -0.4, "Retract", "Hold"))
    import_labels(path, labels, LabelImportConfig(rate=RATE))
    return path


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return labelled_session(tmp_path_factory.mktemp("rsa"))


def test_rsa_appends_rdms_and_comparisons(session):
    done = rsa(session, ["joint_angles", "kinematics"], RsaConfig(chunk_duration=2.0, n_permutations=50))
    assert isinstance(done, RsaResult) and done.name == "processing/mimic/RepresentationalSimilarity"
    assert done.labels == "intervals/behavior_labels" and done.feature_sets == ("joint_angles", "kinematics")
    result = done.result
    assert "RDMs over 3 behaviours" in done.summary() and "\n" not in done.summary()
    assert set(done.most_similar()["reference"]) == {"neural_DLS", "neural_MC"}
    with read_session(session) as nwbfile:
        stored = nwbfile.processing["mimic"]["RepresentationalSimilarity"]
        assert list(stored.rdm_names[:]) == ["neural_DLS", "neural_MC", "joint_angles", "kinematics"]
        assert sorted(stored.condition_labels[:]) == ["Hold", "Reach", "Retract"]
        np.testing.assert_allclose(stored.rdms[:], result.rdms)
        assert set(stored.dissimilarity_measures[:]) == {"crossnobis"}
        comparisons = stored.comparisons.to_dataframe()
        assert len(comparisons) == 4 and set(comparisons["method"]) == {"whitened_unbiased_cosine"}
        dls = comparisons[(comparisons.reference_rdm == "neural_DLS") & (comparisons.candidate_rdm == "joint_angles")]
        assert dls["similarity"].iloc[0] > 0.5  # the DLS units encode the hip angle
    assert validate(path=str(session)) == []


def test_rsa_bad_inputs_write_nothing(session, tmp_path, capsys):
    before = digest(session)
    assert main(["rsa", str(session), "--feature-set", "gait"]) == 2
    assert "unknown feature set 'gait'" in capsys.readouterr().err
    assert main(["rsa", str(session), "--labels", "sleep_stages"]) == 2
    assert "no behaviour labels at intervals/sleep_stages" in capsys.readouterr().err
    assert digest(session) == before

    path, t, _ = registered_toy_session(tmp_path)
    import_units(
        path,
        {"a": np.linspace(0.1, 39, 500)},
        UnitImportConfig(sampling_rate=30000.0, session_end=40.0, unit_table={"a": {"brain_region": "DLS"}}),
    )
    late = tmp_path / "late.csv"
    late.write_text("start,stop,label\n100,120,Walk\n")
    import_labels(path, late, LabelImportConfig(session_end=200.0))
    before = digest(path)
    with pytest.raises(InputError, match="labels do not overlap the data"):
        rsa(path, ["joint_angles"], RsaConfig(chunk_duration=2.0))
    assert digest(path) == before


def test_labels_replaced_while_the_rdms_are_computed_are_refused(tmp_path, monkeypatch):
    """Another writer replaces the behaviour labels between the stage's read and its append: the
    RDMs (conditions of the old labels) are not appended, and the session keeps the new labels."""
    path = labelled_session(tmp_path)
    compute = rsa_nwb.compute_rdms

    def compute_while_another_writer_replaces_the_labels(*args, **kwargs):
        new = np.resize(np.repeat(["Walk", "Rear", "Groom"], 50), 2000)  # 3 s cycles over the 40 s
        import_labels(path, new, LabelImportConfig(rate=RATE), replace=True)
        return compute(*args, **kwargs)

    monkeypatch.setattr(rsa_nwb, "compute_rdms", compute_while_another_writer_replaces_the_labels)
    config = RsaConfig(chunk_duration=2.0, n_permutations=10)
    with pytest.raises(InputError, match=r"input intervals/behavior_labels changed since it was read: rerun$"):
        rsa(path, ["joint_angles"], config)
    with read_session(path) as nwbfile:
        assert "mimic" not in nwbfile.processing or "RepresentationalSimilarity" not in (
            nwbfile.processing["mimic"].data_interfaces
        )
        assert set(nwbfile.intervals["behavior_labels"]["label"][:]) == {"Walk", "Rear", "Groom"}
    monkeypatch.undo()
    assert sorted(rsa(path, ["joint_angles"], config).result.conditions) == ["Groom", "Rear", "Walk"]
