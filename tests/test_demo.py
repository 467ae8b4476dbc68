"""The demo, the README's main job, end to end on a short piece of the shipped real clip."""

import pytest

from mimic_nwb.cli import main
from mimic_nwb.demo import run_demo
from mimic_nwb.session import read_session
from mimic_nwb.simulate.distill import DistillationConfig
from ndx_mimic import (
    ControllerNetwork,
    EncodingResults,
    NetworkActivations,
    RepresentationalSimilarity,
    SimulationRollout,
    StacRegistration,
)

from helpers import digest

# One short DAgger iteration: the test checks that every stage runs and links, not how well the
# network imitates (benchmarks/imitation_bench.py measures that).
QUICK = DistillationConfig(iterations=1, expert_passes=1, student_passes=1, steps_per_iteration=20)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("demo")
    lines = []
    session, ok = run_demo(outdir, frames=600, distillation=QUICK, log=lines.append)
    return outdir, session, ok, lines


def test_demo_runs_every_stage_on_a_short_clip(demo):
    outdir, session, ok, lines = demo
    assert ok, "\n".join(lines)
    stages = [line.split("]")[0][1:] for line in lines if line.startswith("[")]
    for stage in (
        "create",
        "keypoints",
        "stac",
        "inverse dynamics",
        "expert",
        "train controller",
        "closed loop",
        "units",
        "labels",
        "encode",
        "rsa",
        "report",
        "render",
        "dandi",
    ):
        assert stage in stages, stage
    with read_session(session) as nwbfile:
        mimic = nwbfile.processing["mimic"]
        kinds = {type(obj) for obj in mimic.data_interfaces.values()}
        assert {
            StacRegistration,
            SimulationRollout,
            ControllerNetwork,
            NetworkActivations,
            EncodingResults,
            RepresentationalSimilarity,
        } <= kinds
        assert mimic["StacRegistration"].qpos.data.shape == (600, 74)
        assert mimic["SimulationRollout_expert"].mode == "expert"
        closed = mimic["NetworkActivations_closed_loop"]
        assert (
            closed.rollout is mimic["SimulationRollout_closed_loop"] and closed.controller is mimic["ControllerNetwork"]
        )
        assert len(nwbfile.units) == 9 and len(nwbfile.intervals["behavior_labels"]) > 0
    assert (outdir / "report.html").stat().st_size > 100_000 and (outdir / "registration.png").exists()
    assert list((outdir / "dandiset").glob("sub-rat-demo/*.nwb"))


def test_demo_again_skips_what_is_done(demo, capsys):
    outdir, session, _, _ = demo
    before = digest(session)
    assert main(["demo", str(outdir), "--frames", "600"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped (run with --fresh to start over)") == 11  # every stage that appends
    assert digest(session) == before


def test_demo_refuses_a_clip_too_short(tmp_path, capsys):
    assert main(["demo", str(tmp_path), "--frames", "100"]) == 2
    assert "--frames 100: the demo runs on 600 to 1000 frames" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
