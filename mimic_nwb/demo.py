"""``mimic-nwb demo OUTDIR``: the pipeline, end to end, on the real rat clip shipped in mimic_nwb/data.

Each stage runs only when its result is not in the session yet, so running the demo again
resumes where it stopped; ``fresh=True`` starts over from a new session file.
"""

import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .controller import ControllerConfig
from .create import SessionMetadata, create_session
from .data import data_path
from .encoding import EncodingConfig
from .encoding.nwb import encode
from .errors import InputError
from .features import available_feature_sets, read_feature_set
from .groundtruth import GROUND_TRUTH_COLUMNS, movement_labels, simulate_units
from .importers.keypoints import KeypointImportConfig, import_keypoints
from .importers.labels import LabelImportConfig, import_labels
from .importers.units import SortedUnits, units_to_nwb
from .inspection import inspect_session
from .render import RenderConfig, render
from .report import write_report
from .rsa.nwb import RsaConfig, rsa
from .session import append, read_session
from .simulate import RolloutConfig
from .simulate.distill import DistillationConfig
from .simulate.nwb import inverse_dynamics, simulate, train_controller
from .stac.nwb import stac

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
    drives=[
        dict(name="drive_DLS", brain_region="DLS", num_tetrodes=4),
        dict(name="drive_MC", brain_region="MC", num_tetrodes=4),
    ],
)


# The clip is 20 s long: 2-s chunks give 10 held-out chunks for 5 folds; lags -0.5 ... +0.3 s.
DEMO_ENCODING = EncodingConfig(chunk_duration=2.0, lags=tuple(round(-0.5 + 0.1 * i, 1) for i in range(9)))
# The clip has 1000 frames: layers stay narrower than that (nwbinspector's data orientation check).
# The MIMIC network distilled from the tracking expert (DAgger): the paper's LSTM decoder (it
# imitated longer than an MLP decoder here), a small KL weight (the distillation's errors are small;
# the paper's 1e-4 drowns them and leaves the latent nearly uninformative).
DEMO_CONTROLLER = ControllerConfig(encoder_sizes=(512, 512), kl_weight=1e-6)
# Longer than the library default (more DAgger iterations, 16-frame windows, 3 passes of the
# student per iteration): the student's episodes grow with iterations (README, honest status);
# 15 iterations (about 9 minutes on 2 cores) keep the whole demo inside 15 minutes.
DEMO_DISTILLATION = DistillationConfig(
    iterations=15, student_passes=3, training=replace(DistillationConfig().training, sequence_length=16)
)
DEMO_ROLLOUT = RolloutConfig(mode="closed_loop", resample_latent=True, latent_samples=50, seed=0)
# Which feature set drives each simulated unit, at which lag, in which region (a feature set the
# session lacks is skipped: the plan grows with the pipeline).
GROUND_TRUTH_PLAN = [
    ("kinematics", -0.2, "MC"),
    ("kinematics", 0.0, "MC"),
    ("kinematics", -0.1, "DLS"),
    ("joint_angles", -0.1, "DLS"),
    ("joint_angles", 0.1, "DLS"),
    ("inverse_dynamics", -0.1, "MC"),
    ("inverse_dynamics", 0.0, "DLS"),
    ("NetworkActivations_closed_loop/lstm_hidden_0", -0.1, "DLS"),
    ("NetworkActivations_closed_loop/lstm_hidden_0", 0.0, "MC"),
]


def _has_units(path):
    with read_session(path) as nwbfile:
        return nwbfile.units is not None


def _has_labels(path):
    with read_session(path) as nwbfile:
        return "behavior_labels" in (nwbfile.intervals or {})


def _movement_labels(path):
    with read_session(path) as nwbfile:
        labels, _ = movement_labels(nwbfile)
    return labels


def add_simulated_units(path, seed=0):
    """Units simulated from the ground-truth plan, marked as simulated, with their ground truth."""
    with read_session(path) as nwbfile:
        available = set(available_feature_sets(nwbfile))
        plan = [entry for entry in GROUND_TRUTH_PLAN if entry[0] in available]
        times = read_feature_set(nwbfile, "kinematics").times
        simulated = simulate_units(nwbfile, plan, float(times[0]), float(times[-1]), seed=seed, path=str(path))
    with append(path) as s:
        s.check_new("units", module=None)
        groups = {g.location: g for g in s.nwbfile.electrode_groups.values()}
        units = SortedUnits(
            names=simulated.names,
            spike_times=simulated.spike_times,
            sampling_rate=30000.0,
            layout="simulated from a known ground truth",
            columns={
                "brain_region": simulated.brain_regions,
                "cell_type": ["simulated"] * len(simulated.names),
                "quality": ["simulated"] * len(simulated.names),
            },
        )
        table = units_to_nwb(
            units,
            [groups[region] for region in simulated.brain_regions],
            description="SIMULATED units (no real spikes ship with the demo): Poisson units driven by one known "
            "feature set at one known lag each; see the ground_truth_* columns.",
        )
        for column, description in GROUND_TRUTH_COLUMNS.items():
            values = {
                "simulated": [True] * len(simulated.names),
                "ground_truth_feature_set": simulated.feature_sets,
                "ground_truth_lag": simulated.lags,
                "ground_truth_gain": simulated.gains,
                "ground_truth_base_rate": simulated.base_rates,
            }[column]
            table.add_column(name=column, description=description, data=values)
        s.nwbfile.units = table
    return f"{len(simulated.names)} simulated units driven by {sorted({f for f, _, _ in plan})}"


# A local dandiset folder for `dandi organize` and `dandi validate`; nothing is uploaded.
DEMO_DANDISET_YAML = """\
identifier: DANDI:000000
name: ndx-mimic demo (local only, never uploaded)
description: >-
  MIMIC virtual-rodent pipeline demo on a real 1000-frame DANNCE clip of a rat. The units are
  simulated from a known ground truth and the subject metadata are stated for the demo only.
license:
- spdx:CC-BY-4.0
contributor:
- name: Demo, Data
  email: demo@example.org
  roleName:
  - dcite:ContactPerson
  schemaKey: Person
"""


def publish_locally(session, dandiset_dir):
    """Organize the session into a local dandiset folder with DANDI names and validate it (no upload)."""
    from .dandi import publish

    dandiset_dir.mkdir(parents=True, exist_ok=True)
    (dandiset_dir / "dandiset.yaml").write_text(DEMO_DANDISET_YAML)
    return publish([session], dandiset_dir=dandiset_dir, upload_files=False)


def key_numbers(path):
    """The demo's key numbers: STAC error, episodes, and each unit's best model against its ground truth."""
    lines = ["key numbers:"]
    with read_session(path) as nwbfile:
        mimic = nwbfile.processing.get("mimic")
        results = mimic.data_interfaces if mimic else {}
        if "StacRegistration" in results:
            stac = results["StacRegistration"]
            errors = np.asarray(stac.keypoint_errors.data[:])
            lines.append(
                f"  STAC (processing/mimic/StacRegistration): mean keypoint error {1000 * np.nanmean(errors):.2f} mm, "
                f"median {1000 * np.nanmedian(errors):.2f} mm, {int(np.sum(stac.frame_valid[:]))} frames"
            )
        for name, obj in results.items():
            if type(obj).__name__ == "SimulationRollout" and obj.mode != "inverse_dynamics":
                durations = np.asarray(obj.episodes["stop_time"][:]) - np.asarray(obj.episodes["start_time"][:])
                lines.append(
                    f"  {name}: {len(durations)} episodes, mean {durations.mean():.2f} s, longest {durations.max():.2f} s"
                )
        if "EncodingResults" in results and nwbfile.units is not None and "simulated" in nwbfile.units.colnames:
            table = results["EncodingResults"].to_dataframe(index=True)
            units = nwbfile.units.to_dataframe(index=True)
            best = table.loc[table.groupby("unit")["cv_llr"].idxmax()].set_index("unit")
            hits = 0
            lines.append(
                "  encoding (processing/mimic/EncodingResults): unit, ground truth -> best model (CV-LLR bits/spike)"
            )
            for row, unit in units.iterrows():
                truth, lag = unit["ground_truth_feature_set"], unit["ground_truth_lag"]
                found = best.loc[row]
                hit = found["feature_set"] == truth
                hits += hit
                lines.append(
                    f"    {unit['unit_name']:<28} {truth} @ {lag:+.1f} s -> {found['feature_set']} @ {found['lag']:+.1f} s "
                    f"({found['cv_llr']:.3f}){'' if hit else '  (other set)'}"
                )
            lines.append(f"    best feature set = ground truth for {hits} of {len(units)} units")
        if "RepresentationalSimilarity" in results:
            comparisons = results["RepresentationalSimilarity"].comparisons.to_dataframe()
            for reference, rows in comparisons.groupby("reference_rdm"):
                top = rows.sort_values("similarity", ascending=False).iloc[0]
                lines.append(f"  RSA: {reference} most similar to {top['candidate_rdm']} (WUC {top['similarity']:.2f})")
    return "\n".join(lines)


def _has(path, module, name):
    with read_session(path) as nwbfile:
        return module in nwbfile.processing and name in nwbfile.processing[module].data_interfaces


# The shortest clip the demo runs on: every stage's widest stored series (the encoder's 512 units)
# stays narrower than the clip is long, and encoding keeps 5 folds of 2-s chunks.
MIN_DEMO_FRAMES = 600


def demo_clip(outdir, frames=None):
    """The shipped DANNCE clip, or a copy of its first ``frames`` frames written into ``outdir``."""
    clip = data_path("rat23_dannce_clip_1000.mat")
    if frames is None:
        return clip
    if not MIN_DEMO_FRAMES <= int(frames) <= 1000:
        raise InputError(f"--frames {frames}: the demo runs on {MIN_DEMO_FRAMES} to 1000 frames of the clip")
    import scipy.io

    short = Path(outdir) / f"rat23_dannce_clip_{int(frames)}.mat"
    pred = scipy.io.loadmat(clip)["pred"][: int(frames)]
    scipy.io.savemat(short, {"pred": pred})
    return short


def run_demo(outdir, fresh=False, log=print, frames=None, distillation=DEMO_DISTILLATION):
    """Run every stage on the shipped clip (its first ``frames`` frames when given, for a quick
    check); skip the stages whose results the session already has; return (session path, valid).

    ``distillation`` sets how long the network is distilled (default: the demo's 15 DAgger
    iterations, about 9 minutes on 2 cores)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    session = outdir / DEMO_SESSION
    clip = demo_clip(outdir, frames)
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
        lambda: create_session(session, SessionMetadata.from_dict(DEMO_METADATA, source="demo metadata")).summary(),
    )
    stage(
        "keypoints",
        lambda: _has(session, "behavior", "PoseEstimation"),
        lambda: import_keypoints(session, clip, KeypointImportConfig(skeleton="rat23", rate=50.0)).summary(),
    )
    stage(
        "stac",
        lambda: _has(session, "mimic", "StacRegistration"),
        lambda: stac(session).summary(),
    )
    stage(
        "inverse dynamics",
        lambda: _has(session, "mimic", "SimulationRollout_inverse_dynamics"),
        lambda: inverse_dynamics(session).summary(),
    )
    stage(
        "expert",
        lambda: _has(session, "mimic", "SimulationRollout_expert"),
        lambda: simulate(session, RolloutConfig(mode="expert")).summary(),
    )
    stage(
        "train controller",
        lambda: _has(session, "mimic", "ControllerNetwork"),
        lambda: train_controller(
            session, outdir / "controller.npz", DEMO_CONTROLLER, distillation=distillation
        ).summary(),
    )
    stage(
        "closed loop",
        lambda: _has(session, "mimic", "SimulationRollout_closed_loop"),
        lambda: simulate(session, DEMO_ROLLOUT).summary(),
    )
    stage("units", lambda: _has_units(session), lambda: add_simulated_units(session))
    stage(
        "labels",
        lambda: _has_labels(session),
        lambda: import_labels(session, _movement_labels(session), LabelImportConfig(rate=50.0)).summary(),
    )
    stage(
        "encode",
        lambda: _has(session, "mimic", "EncodingResults"),
        lambda: encode(session, config=DEMO_ENCODING).summary(),
    )
    stage(
        "rsa",
        lambda: _has(session, "mimic", "RepresentationalSimilarity"),
        lambda: rsa(session, config=RsaConfig(chunk_duration=DEMO_ENCODING.chunk_duration)).summary(),
    )
    log(f"[report] {write_report(session, outdir / 'report.html')}")
    log(f"[render] {render(session, outdir / 'registration.png', RenderConfig(frames='250')).summary()}")
    inspection = inspect_session(session)
    ok = inspection.ok
    log(inspection.text)
    log(key_numbers(session))
    if ok:
        log(f"[dandi] {publish_locally(session, outdir / 'dandiset').summary()}")
    log(f"demo finished in {time.perf_counter() - started:.1f} s: {session} ({'valid' if ok else 'INVALID'})")
    return session, ok
