"""``mimic-nwb demo OUTDIR``: the pipeline, end to end, on the real rat clip shipped in mimic_nwb/data.

Each stage runs only when its result is not in the session yet, so running the demo again
resumes where it stopped; ``fresh=True`` starts over from a new session file.
"""

import time
from datetime import datetime, timezone
from pathlib import Path

from .create import SessionMetadata, create_session
from .data import data_path
from .importers.keypoints import import_keypoints
from .inspect import inspect_session
from .session import read_session
from .stac.nwb import stac_session

DEMO_SESSION = "mimic_demo.nwb"
DEMO_METADATA = dict(
    subject_id="rat-demo",
    species="Rattus norvegicus",
    sex="U",
    age="P90D",
    subject_description=(
        "DEMO metadata: the keypoints are a real 1000-frame DANNCE clip of a rat (talmolab/stac-mjx test "
        "data); the subject's id, sex and age are not known and are stated here for the demo only."
    ),
    session_id="demo-clip1000",
    session_start_time=datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc),
    session_description="MIMIC pipeline demo on a real 1000-frame DANNCE clip of a freely moving rat (50 Hz).",
    experiment_description="Demonstration of ndx-mimic / mimic-nwb; see the subject description.",
    institution="ndx-mimic demo",
    lab="ndx-mimic demo",
    experimenter=["Demo, Data"],
    keywords=["virtual rodent", "MuJoCo", "STAC", "DANNCE", "demo"],
    drives=[dict(name="drive_DLS", brain_region="DLS", num_tetrodes=4), dict(name="drive_MC", brain_region="MC", num_tetrodes=4)],
)


def _has(path, module, name):
    with read_session(path) as nwbfile:
        return module in nwbfile.processing and name in nwbfile.processing[module].data_interfaces


def run_demo(outdir, fresh=False, log=print):
    """Run every stage that exists on the shipped clip; return the session path."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    session = outdir / DEMO_SESSION
    started = time.perf_counter()

    def stage(name, done, run):
        if done():
            log(f"[{name}] already in {session.name}: skipped (run with --fresh to start over)")
            return
        t0 = time.perf_counter()
        result = run()
        log(f"[{name}] {result} ({time.perf_counter() - t0:.1f} s)")

    if fresh and session.exists():
        session.unlink()
    stage(
        "create",
        session.exists,
        lambda: f"created {create_session(session, SessionMetadata.from_dict(DEMO_METADATA, source='demo metadata'))}",
    )
    stage(
        "keypoints",
        lambda: _has(session, "behavior", "PoseEstimation"),
        lambda: import_keypoints(session, data_path("rat23_dannce_clip_1000.mat"), skeleton="rat23", rate=50.0),
    )
    stage(
        "stac",
        lambda: _has(session, "mimic", "StacRegistration"),
        lambda: stac_session(session, progress=False)[0],
    )
    report, ok = inspect_session(session)
    log(report)
    log(f"demo finished in {time.perf_counter() - started:.1f} s: {session} ({'valid' if ok else 'INVALID'})")
    return session, ok
