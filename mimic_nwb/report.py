"""``mimic-nwb report``: one self-contained HTML page with figures of every stage a session holds.

The page has a header (subject, session, what the file holds, what it lacks) and one section
per kind of result, in pipeline order. A section shows its figures only when the session holds
the data, and otherwise one line saying what is absent:

- ``keypoints``: the 3D keypoint traces (x, y, z over time) of each PoseEstimation;
- ``stac``: the STAC error per keypoint (box plots over frames) of each StacRegistration;
- ``rollouts``: per SimulationRollout, the episode durations (coloured by why they ended) and the
  tracking error over time (mean distance between the simulated and the reference bodies, from
  MuJoCo forward kinematics of both qpos); then the survival curve of every imitation (the
  proportion of episodes lasting at least each duration, the paper's headline measure) and a
  rendered closed-loop rollout beside its reference (a few frames; needs OpenGL, else a note);
- ``activations``: per NetworkActivations, heat maps of a few layers (units z-scored over time)
  above a spike raster of the session's units over the same time;
- ``encoding``: per EncodingResults, the cross-validated log-likelihood ratio of each unit's best
  lag per feature set, one box plot per brain region, and the share of units best predicted by
  each feature set (among units with a significant model, when significance was computed);
- ``rsa``: per RepresentationalSimilarity, its RDMs and the similarities (e.g. WUC) of the
  candidate RDMs to each reference RDM.

Figures are drawn with matplotlib's Agg canvas (no pyplot state, no display) and embedded as
base64 PNG: the page loads nothing from anywhere. Long series are decimated for drawing (at
most ``MAX_POINTS`` samples per trace), so a long session renders as fast as a short one.
"""

import base64
import contextlib
import html
import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .errors import InputError
from .session import read_session

RESULTS = "mimic"
BEHAVIOR = "behavior"
DPI = 90
MAX_POINTS = 4000  # samples drawn per trace
MAX_PER_KIND = 3  # results of one kind drawn (the others are listed)
MAX_LAYER_UNITS = 48  # units per activation heat map (the most variable)
MAX_RASTER_UNITS = 80
LAYER_PREFERENCE = ("encoder", "latent_mean", "lstm_hidden", "decoder", "action", "latent_sample", "lstm_cell")


@dataclass
class Figure:
    png_base64: str
    caption: str
    alt: str


@dataclass
class Section:
    """One part of the page: figures, or why there are none."""

    key: str
    title: str
    figures: list = field(default_factory=list)
    absent: str | None = None
    notes: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Drawing helpers


def _new_figure(width, height):
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _stride(num_samples, limit=MAX_POINTS):
    return max(1, math.ceil(num_samples / limit))


def _results(nwbfile, kind, module=RESULTS):
    found = nwbfile.processing.get(module)
    if found is None:
        return []
    return [obj for obj in found.data_interfaces.values() if type(obj).__name__ == kind]


def _names(values):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _more(objects, kind):
    if len(objects) <= MAX_PER_KIND:
        return []
    return [f"{len(objects) - MAX_PER_KIND} more {kind} not drawn: {', '.join(o.name for o in objects[MAX_PER_KIND:])}"]


# --------------------------------------------------------------------------------------------
# Sections


def keypoint_section(nwbfile):
    section = Section("keypoints", "3D keypoints")
    poses = _results(nwbfile, "PoseEstimation", BEHAVIOR)
    if not poses:
        section.absent = f"No 3D keypoints: no PoseEstimation in processing/{BEHAVIOR}."
        return section
    for pose in poses[:MAX_PER_KIND]:
        series = pose.pose_estimation_series
        names = _names(pose.skeleton.nodes[:]) if pose.skeleton is not None else list(series)
        names = [n for n in names if n in series]
        first = series[names[0]]
        step = _stride(first.data.shape[0])
        times = np.asarray(first.get_timestamps())[::step]
        positions = np.stack([np.asarray(series[n].data[::step], dtype=float) * series[n].conversion for n in names], 1)
        figure = _new_figure(11, 6.5)
        axes = figure.subplots(positions.shape[2], 1, sharex=True)
        colours = _colours(len(names))
        for d, ax in enumerate(np.atleast_1d(axes)):
            for k, name in enumerate(names):
                ax.plot(times, positions[:, k, d], lw=0.7, color=colours[k], label=name)
            ax.set_ylabel(f"{'xyz'[d]} ({first.unit})")
            ax.grid(alpha=0.3)
        np.atleast_1d(axes)[-1].set_xlabel("time (s)")
        np.atleast_1d(axes)[0].legend(
            loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, ncol=1 if len(names) <= 12 else 2, frameon=False
        )
        missing = int(np.isnan(positions).any(axis=2).sum())
        section.figures.append(
            Figure(
                _png(figure),
                f"processing/{BEHAVIOR}/{pose.name}: {first.data.shape[0]} frames x {len(names)} keypoints "
                f"({times[-1] - times[0]:.1f} s drawn), source {pose.source_software or 'unknown'}; "
                f"{missing} missing detections among the drawn samples.",
                f"keypoint traces of {pose.name}",
            )
        )
    section.notes += _more(poses, "PoseEstimation")
    return section


def _colours(n):
    from matplotlib import colormaps

    cmap = colormaps["tab20"] if n > 10 else colormaps["tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def stac_section(nwbfile):
    section = Section("stac", "STAC registration error")
    registrations = _results(nwbfile, "StacRegistration")
    if not registrations:
        section.absent = f"No STAC registration: no StacRegistration in processing/{RESULTS}."
        return section
    for registration in registrations[:MAX_PER_KIND]:
        errors = registration.keypoint_errors
        step = _stride(errors.data.shape[0], 20000)
        values = np.asarray(errors.data[::step], dtype=float) * 1000.0  # mm
        names = _names(errors.column_names[:])
        figure = _new_figure(11, 3.8)
        ax = figure.subplots()
        columns = [v[np.isfinite(v)] for v in values.T]
        ax.boxplot(columns, showfliers=False, widths=0.6)
        ax.set_xticks(np.arange(1, len(names) + 1), names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("keypoint error (mm)")
        ax.grid(axis="y", alpha=0.3)
        valid = np.asarray(registration.frame_valid[:], dtype=bool)
        mean = np.nanmean(values) / 1000 if registration.mean_error is None else registration.mean_error
        body = registration.body_model
        section.figures.append(
            Figure(
                _png(figure),
                f"processing/{RESULTS}/{registration.name}: distance between each measured keypoint and its model site "
                f"(boxes: quartiles, whiskers 1.5 IQR) over {len(values)} frames; {int(valid.sum())} of {len(valid)} "
                f"frames fitted; mean error {mean * 1000:.2f} mm; body model '{body.name}' ({body.model_name}, "
                f"scale {body.scale:g}).",
                f"STAC error per keypoint of {registration.name}",
            )
        )
    section.notes += _more(registrations, "StacRegistration")
    return section


def tracking_error(rollout, path="session"):
    """Mean distance (m) between the rollout's bodies and its reference's, per rollout step.

    Returns ``(times, errors)`` (decimated to ``MAX_POINTS``) or ``(None, reason)``.
    """
    import mujoco

    from .render import compile_body_model, nearest_rows

    reference = rollout.reference
    if reference is None:
        return None, "the rollout links no reference registration"
    if rollout.qpos is None:
        return None, "the rollout stores no qpos"
    model = compile_body_model(rollout.body_model, path)
    reference_model = compile_body_model(reference.body_model, path)
    if model.nbody != reference_model.nbody:
        return None, f"the rollout's body has {model.nbody} bodies, the reference's {reference_model.nbody}"
    step = _stride(rollout.qpos.data.shape[0])
    times = np.asarray(rollout.qpos.get_timestamps())[::step]
    qpos = np.asarray(rollout.qpos.data[::step], dtype=float)
    rows = nearest_rows(reference.qpos.get_timestamps(), times)
    first, last = int(rows.min()), int(rows.max()) + 1
    reference_qpos = np.asarray(reference.qpos.data[first:last], dtype=float)[rows - first]
    data, reference_data = mujoco.MjData(model), mujoco.MjData(reference_model)
    errors = np.empty(len(times))
    for i, (q, q_ref) in enumerate(zip(qpos, reference_qpos)):
        data.qpos[:], reference_data.qpos[:] = q, q_ref
        mujoco.mj_kinematics(model, data)
        mujoco.mj_kinematics(reference_model, reference_data)
        errors[i] = np.linalg.norm(data.xpos[1:] - reference_data.xpos[1:], axis=1).mean()
    return times, errors


def rollout_section(nwbfile, path):
    section = Section("rollouts", "Simulation rollouts")
    rollouts = _results(nwbfile, "SimulationRollout")
    if not rollouts:
        section.absent = f"No rollout: no SimulationRollout in processing/{RESULTS}."
        return section
    for rollout in rollouts[:MAX_PER_KIND]:
        episodes = rollout.episodes
        starts = np.asarray(episodes["start_time"].data[:], dtype=float)
        durations = np.asarray(episodes["stop_time"].data[:], dtype=float) - starts
        reasons = _names(episodes["termination_reason"].data[:])
        figure = _new_figure(11, 3.6)
        duration_ax, error_ax = figure.subplots(1, 2, width_ratios=[1, 2.4])
        kinds = sorted(set(reasons))
        colours = dict(zip(kinds, _colours(len(kinds))))
        if len(durations) <= 40:
            duration_ax.bar(np.arange(len(durations)), durations, color=[colours[r] for r in reasons])
            duration_ax.set_xlabel("episode")
        else:
            duration_ax.hist(
                [durations[np.asarray(reasons) == k] for k in kinds],
                bins=30,
                stacked=True,
                color=[colours[k] for k in kinds],
            )
            duration_ax.set_xlabel("episode duration (s)")
        duration_ax.set_ylabel("duration (s)" if len(durations) <= 40 else "episodes")
        duration_ax.set_title("episodes", fontsize=10)
        from matplotlib.patches import Patch

        duration_ax.legend(
            handles=[Patch(color=colours[k], label=k) for k in kinds],
            fontsize=7,
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(0.0, -0.2),
            ncol=2,
        )
        try:
            times, errors = tracking_error(rollout, path)
        except InputError as error:  # a body model that does not compile: say so, draw the rest
            times, errors = None, str(error)
        if times is not None:
            error_ax.plot(times, errors * 1000.0, lw=0.8, color="tab:blue")
            for start in starts[1:]:
                error_ax.axvline(start, color="0.6", lw=0.6, ls="--")
            error_ax.set_ylabel("tracking error (mm)")
            error_ax.set_xlabel("time (s)")
            error_note = f"tracking error mean {np.nanmean(errors) * 1000:.1f} mm (dashed: episode starts)"
        else:
            error_ax.text(
                0.5,
                0.5,
                f"no tracking error: {errors}",
                ha="center",
                va="center",
                fontsize=9,
                transform=error_ax.transAxes,
                wrap=True,
            )
            error_ax.set_axis_off()
            error_note = f"no tracking error ({errors})"
        error_ax.set_title("mean body position error against the reference", fontsize=10)
        error_ax.grid(alpha=0.3)
        reference = rollout.reference.name if rollout.reference is not None else "none"
        section.figures.append(
            Figure(
                _png(figure),
                f"processing/{RESULTS}/{rollout.name}: {rollout.mode}, {rollout.num_steps} steps, reference {reference}; "
                f"{len(durations)} episodes"
                + (f", median duration {np.median(durations):.2f} s" if len(durations) else "")
                + f"; {error_note}.",
                f"episode durations and tracking error of {rollout.name}",
            )
        )
    imitations = [r for r in rollouts if r.mode != "inverse_dynamics" and r.episodes is not None]
    if imitations:
        section.figures.append(survival_figure(imitations))
        still = rollout_still(nwbfile, path, imitations)
        if isinstance(still, Figure):
            section.figures.append(still)
        else:
            section.notes.append(still)
    section.notes += _more(rollouts, "SimulationRollout")
    return section


def survival_figure(rollouts):
    """The paper's headline measure of imitation: for each rollout, the proportion of its
    episodes that last at least each duration (``simulate.tracking.survival_curve`` on the
    episodes table), one curve per rollout."""
    from .simulate.nwb import episode_lengths
    from .simulate.tracking import episode_length_quantiles, survival_curve

    figure = _new_figure(8, 3.6)
    ax = figure.subplots()
    notes = []
    for rollout, colour in zip(rollouts, _colours(len(rollouts))):
        lengths = episode_lengths(rollout)
        if len(lengths) == 0:
            continue
        durations, proportion = survival_curve(lengths)
        seconds = durations * rollout.control_timestep
        ax.step(
            seconds,
            proportion,
            where="post",
            color=colour,
            lw=1.4,
            label=f"{rollout.name} ({rollout.mode}, {len(lengths)} episodes)",
        )
        median = episode_length_quantiles(lengths, (0.5,))[0.5] * rollout.control_timestep
        notes.append(f"{rollout.name}: median episode {median:.2f} s")
    ax.set_xlabel("episode duration (s)")
    ax.set_ylabel("proportion of episodes\nlasting at least this long")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="upper right")
    ax.set_title("survival of imitation episodes", fontsize=10)
    return Figure(
        _png(figure),
        "Proportion of episodes exceeding a given duration (an episode ends when the "
        "body error of the keypoint-carrying bodies passes the termination threshold, or at the end "
        "of the reference): " + "; ".join(notes) + ".",
        "survival curves of the rollouts' episodes",
    )


def rollout_still(nwbfile, path, rollouts, width=720, height=300, count=3):
    """A rendered rollout beside its reference: ``count`` frames spread over the first closed-loop
    rollout (else the first imitation), each the simulated body (left) next to the registration it
    imitates (right). Returns a Figure, or a one-line note when it cannot be rendered (no OpenGL)."""
    from .render import render_frames, session_tracks

    chosen = next((r for r in rollouts if r.mode == "closed_loop"), rollouts[0])
    try:
        tracks = session_tracks(nwbfile, path, rollout=chosen.name)
        n = len(tracks[0].times)
        frames = np.unique(np.linspace(0, n - 1, count + 2)[1:-1].astype(int))
        pictures = list(render_frames(tracks, frames, width, height))
    except Exception as error:  # no OpenGL backend, a body that does not compile: the rest still draws
        return f"No rendered rollout for {chosen.name}: {type(error).__name__}: {error}"
    from matplotlib.figure import Figure as MplFigure

    # no layout engine: the pictures go edge to edge
    figure = MplFigure(figsize=(width / DPI, height * len(pictures) / DPI), dpi=DPI)
    axes = np.atleast_1d(figure.subplots(len(pictures), 1))
    for ax, picture in zip(axes, pictures):
        ax.imshow(picture)
        ax.set_axis_off()
    figure.subplots_adjust(left=0, right=1, top=1, bottom=0, hspace=0.02)
    times = ", ".join(f"{tracks[0].times[f]:.2f} s" for f in frames)
    return Figure(
        _png(figure),
        f"processing/{RESULTS}/{chosen.name} ({chosen.mode}, left) beside the reference it "
        f"imitates (right), at {times}.",
        f"rendered frames of {chosen.name} beside its reference",
    )


def _spike_trains(nwbfile, start, stop):
    """``(names, regions, trains)`` of up to MAX_RASTER_UNITS units, spike times in [start, stop]."""
    units = nwbfile.units
    if units is None or len(units) == 0 or "spike_times" not in units.colnames:
        return None
    index = units["spike_times"]
    ends = np.asarray(index.data[:], dtype=int)
    times = np.asarray(index.target.data[:], dtype=float)
    regions = _names(units["brain_region"].data[:]) if "brain_region" in units.colnames else [""] * len(ends)
    order = sorted(range(len(ends)), key=lambda i: (regions[i], i))[:MAX_RASTER_UNITS]
    trains = []
    for i in order:
        train = times[(ends[i - 1] if i else 0) : ends[i]]
        trains.append(train[(train >= start) & (train <= stop)])
    return [regions[i] for i in order], trains, len(ends)


def _pick_layers(activations, limit=4):
    layers = dict(activations.layer_activations)
    chosen = []
    for kind in LAYER_PREFERENCE:
        for name, layer in layers.items():
            if layer.layer_kind == kind and name not in chosen:
                chosen.append(name)
                break
    chosen += [name for name in layers if name not in chosen]
    return chosen[:limit]


def activations_section(nwbfile):
    section = Section("activations", "Network activations and spikes")
    all_activations = _results(nwbfile, "NetworkActivations")
    if not all_activations:
        section.absent = f"No network activations: no NetworkActivations in processing/{RESULTS}."
        return section
    for activations in all_activations[:MAX_PER_KIND]:
        from matplotlib.ticker import MaxNLocator

        layer_names = _pick_layers(activations)
        first = activations.layer_activations[layer_names[0]]
        times = np.asarray(first.get_timestamps())
        start, stop = float(times[0]), float(times[-1])
        spikes = _spike_trains(nwbfile, start, stop)
        rows = len(layer_names) + (spikes is not None)
        figure = _new_figure(11, 1.5 * len(layer_names) + (2.4 if spikes is not None else 0) + 0.4)
        axes = np.atleast_1d(
            figure.subplots(rows, 1, sharex=True, height_ratios=[1.5] * len(layer_names) + ([2.4] if spikes else []))
        )
        for ax, name in zip(axes, layer_names):
            layer = activations.layer_activations[name]
            step = _stride(layer.data.shape[0], 2000)
            values = np.asarray(layer.data[::step], dtype=float)
            spread = values.std(axis=0)
            keep = np.sort(np.argsort(-spread)[:MAX_LAYER_UNITS])
            z = (values[:, keep] - values[:, keep].mean(axis=0)) / np.where(spread[keep] > 0, spread[keep], 1)
            image = ax.imshow(
                z.T,
                aspect="auto",
                interpolation="nearest",
                cmap="RdBu_r",
                vmin=-3,
                vmax=3,
                extent=(start, stop, len(keep) - 0.5, -0.5),
            )
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(f"{name}\n({layer.layer_kind})\nunit", fontsize=8)
        figure.colorbar(image, ax=axes[: len(layer_names)], label="z-score", shrink=0.8, pad=0.01)
        caption = (
            f"processing/{RESULTS}/{activations.name} (rollout {activations.rollout.name}): layers "
            f"{', '.join(layer_names)} of {len(activations.layer_activations)}, each unit z-scored over time "
            f"(at most {MAX_LAYER_UNITS} most variable units per layer)"
        )
        if spikes is not None:
            regions, trains, num_units = spikes
            ax = axes[-1]
            region_names = sorted(set(regions))
            colours = dict(zip(region_names, _colours(len(region_names))))
            ax.eventplot(trains, colors=[colours[r] for r in regions], linelengths=0.8, linewidths=0.6)
            ax.set_ylabel("unit", fontsize=8)
            ax.set_ylim(len(trains) - 0.5, -0.5)
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            from matplotlib.patches import Patch

            if any(region_names):
                ax.legend(
                    handles=[Patch(color=colours[r], label=r) for r in region_names],
                    fontsize=7,
                    loc="upper left",
                    bbox_to_anchor=(1.01, 1.0),
                    frameon=False,
                )
            caption += f"; below: spikes of {len(trains)} of {num_units} units, grouped by brain region."
        else:
            caption += "; no units in the session, so no spike raster."
        axes[-1].set_xlabel("time (s)")
        section.figures.append(Figure(_png(figure), caption, f"activations and spike raster of {activations.name}"))
    section.notes += _more(all_activations, "NetworkActivations")
    return section


def best_lags(results):
    """One row per unit x feature set of an EncodingResults table: the lag with the highest CV log-likelihood ratio."""
    import pandas as pd

    columns = set(results.colnames)
    unit_column = "unit" if "unit" in columns else "count_column"
    table = pd.DataFrame(
        {
            "unit": np.asarray(results[unit_column].data[:]),
            "brain_region": _names(results["brain_region"].data[:]),
            "feature_set": _names(results["feature_set"].data[:]),
            "cv_llr": np.asarray(results["cv_llr"].data[:], dtype=float),
            "significant": (
                np.asarray(results["significant"].data[:], dtype=bool)
                if "significant" in columns
                else np.zeros(len(results), dtype=bool)
            ),
        }
    )
    table = table[np.isfinite(table.cv_llr)]
    # each unit's best lag per feature set
    best = table.loc[table.groupby(["unit", "feature_set"], sort=False)["cv_llr"].idxmax()]
    return best, "significant" in columns


def encoding_section(nwbfile):
    section = Section("encoding", "Encoding models")
    all_results = _results(nwbfile, "EncodingResults")
    if not all_results:
        section.absent = f"No encoding models: no EncodingResults in processing/{RESULTS}."
        return section
    for results in all_results[:MAX_PER_KIND]:
        best, has_significance = best_lags(results)
        if best.empty:
            section.notes.append(f"{results.name}: no finite CV log-likelihood ratio to draw")
            continue
        feature_sets = list(dict.fromkeys(best.feature_set))
        regions = sorted(set(best.brain_region))
        colours = dict(zip(feature_sets, _colours(len(feature_sets))))
        width = min(14, 2.5 + 0.55 * len(feature_sets) * len(regions))
        figure = _new_figure(max(6.0, width), 4.2)
        axes = np.atleast_1d(figure.subplots(1, len(regions), sharey=True, squeeze=False)[0])
        for ax, region in zip(axes, regions):
            in_region = best[best.brain_region == region]
            values = [in_region.cv_llr[in_region.feature_set == f].to_numpy() for f in feature_sets]
            boxes = ax.boxplot(values, showfliers=False, widths=0.6, patch_artist=True)
            for patch, f in zip(boxes["boxes"], feature_sets):
                patch.set_facecolor(colours[f])
                patch.set_alpha(0.7)
            for x, v in enumerate(values, start=1):
                ax.plot(np.full(len(v), x) + np.linspace(-0.15, 0.15, len(v)), v, ".", color="0.2", ms=3)
            ax.set_xticks(np.arange(1, len(feature_sets) + 1), feature_sets, rotation=35, ha="right", fontsize=8)
            ax.set_title(f"{region or 'unknown region'} ({in_region.unit.nunique()} units)", fontsize=10)
            ax.axhline(0, color="0.5", lw=0.6)
            ax.grid(axis="y", alpha=0.3)
        axes[0].set_ylabel("CV log-likelihood ratio (bits/spike)")
        section.figures.append(
            Figure(
                _png(figure),
                f"processing/{RESULTS}/{results.name}: cross-validated log-likelihood ratio against a mean-rate model, "
                f"at each unit's best lag, per feature set and brain region ({results.model}, {results.num_folds} folds, "
                f"bins {results.bin_size * 1000:g} ms).",
                f"CV log-likelihood ratio per feature set of {results.name}",
            )
        )
        section.figures.append(_share_figure(results.name, best, feature_sets, regions, colours, has_significance))
    section.notes += _more(all_results, "EncodingResults")
    return section


def best_feature_set_shares(best, has_significance):
    """Share of units best predicted by each feature set, per brain region.

    ``best``: one row per unit x feature set (the unit's best lag) with columns unit, brain_region,
    feature_set, cv_llr, significant. A unit's best feature set is the one with the highest CV
    log-likelihood ratio; units are counted when that model is significant (all units when
    significance was not computed or none is significant). Returns ``({region: {feature set:
    share}}, {region: units counted}, which units were counted)``.
    """
    winners = best.loc[best.groupby("unit", sort=False)["cv_llr"].idxmax()]
    counted = winners[winners.significant] if has_significance and winners.significant.any() else winners
    among = (
        "units whose best model is significant"
        if counted is not winners
        else "all units (no significance computed)"
        if not has_significance
        else "all units (none significant)"
    )
    feature_sets = list(dict.fromkeys(best.feature_set))
    shares, totals = {}, {}
    for region in sorted(set(best.brain_region)):
        in_region = counted[counted.brain_region == region]
        totals[region] = len(in_region)
        shares[region] = {
            f: float((in_region.feature_set == f).mean()) if len(in_region) else 0.0 for f in feature_sets
        }
    return shares, totals, among


def _share_figure(name, best, feature_sets, regions, colours, has_significance):
    shares, totals, among = best_feature_set_shares(best, has_significance)
    figure = _new_figure(9, 0.7 + 0.55 * len(regions) + 0.6)
    ax = figure.subplots()
    for row, region in enumerate(regions):
        left = 0.0
        for f in feature_sets:
            share = shares[region][f]
            ax.barh(row, share, left=left, color=colours[f], label=f if row == 0 else None)
            if share >= 0.08:
                ax.text(left + share / 2, row, f"{share:.0%}", ha="center", va="center", fontsize=8)
            left += share
    ax.set_yticks(range(len(regions)), [f"{r or 'unknown'} (n={totals[r]})" for r in regions])
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("share of units best predicted by the feature set")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return Figure(
        _png(figure),
        f"processing/{RESULTS}/{name}: share of units best predicted by each feature set (highest CV log-likelihood "
        f"ratio), per brain region, among {among}.",
        f"share of units best predicted by each feature set in {name}",
    )


def rsa_section(nwbfile):
    section = Section("rsa", "Representational similarity")
    all_rsa = _results(nwbfile, "RepresentationalSimilarity")
    if not all_rsa:
        section.absent = f"No representational similarity: no RepresentationalSimilarity in processing/{RESULTS}."
        return section
    for rsa in all_rsa[:MAX_PER_KIND]:
        names = _names(rsa.rdm_names[:])
        measures = _names(rsa.dissimilarity_measures[:])
        labels = _names(rsa.condition_labels[:])
        shown = names[:8]
        columns = min(4, len(shown))
        grid_rows = math.ceil(len(shown) / columns)
        figure = _new_figure(3.0 * columns + 0.8, 3.6 * grid_rows)
        axes = np.atleast_1d(figure.subplots(grid_rows, columns, squeeze=False).ravel())
        for ax, (i, name) in zip(axes, enumerate(shown)):
            rdm = np.asarray(rsa.rdms[i], dtype=float)
            image = ax.imshow(rdm, cmap="viridis", interpolation="nearest")
            ax.set_title(f"{name}\n({measures[i]})", fontsize=9)
            ticks = np.arange(len(labels))
            small = 8 if len(labels) <= 12 else 5
            ax.set_xticks(ticks, labels, rotation=90, fontsize=small)
            ax.set_yticks(ticks, labels, fontsize=small)
            figure.colorbar(image, ax=ax, shrink=0.75)
        for ax in axes[len(shown) :]:
            ax.set_axis_off()
        section.figures.append(
            Figure(
                _png(figure),
                f"processing/{RESULTS}/{rsa.name}: representational dissimilarity matrices over {len(labels)} behaviour "
                f"conditions ({len(shown)} of {len(names)} drawn).",
                f"RDMs of {rsa.name}",
            )
        )
        comparisons = rsa.comparisons
        if comparisons is not None and len(comparisons):
            section.figures.append(_comparison_figure(rsa.name, comparisons))
        else:
            section.notes.append(f"{rsa.name}: no RDM comparisons")
    section.notes += _more(all_rsa, "RepresentationalSimilarity")
    return section


def _comparison_figure(name, comparisons):
    references = _names(comparisons["reference_rdm"].data[:])
    candidates = _names(comparisons["candidate_rdm"].data[:])
    methods = _names(comparisons["method"].data[:])
    similarity = np.asarray(comparisons["similarity"].data[:], dtype=float)
    p_values = np.asarray(comparisons["p_value"].data[:], dtype=float)
    groups = list(dict.fromkeys(zip(references, methods)))
    candidate_names = list(dict.fromkeys(candidates))
    colours = dict(zip(candidate_names, _colours(len(candidate_names))))
    figure = _new_figure(min(14, max(7.0, 3 + 0.6 * len(candidates))), 3.8)
    ax = figure.subplots()
    width = 0.8 / max(1, len(candidate_names))
    for g, group in enumerate(groups):
        for c, candidate in enumerate(candidate_names):
            rows = [
                i for i in range(len(similarity)) if (references[i], methods[i]) == group and candidates[i] == candidate
            ]
            if not rows:
                continue
            x = g + (c - (len(candidate_names) - 1) / 2) * width
            ax.bar(x, similarity[rows[0]], width, color=colours[candidate], label=candidate if g == 0 else None)
            if np.isfinite(p_values[rows[0]]) and p_values[rows[0]] < 0.05:
                ax.text(x, similarity[rows[0]], "*", ha="center", va="bottom")
    ax.set_xticks(
        range(len(groups)), [f"{r}\n{m.replace('whitened_unbiased_cosine', 'WUC')}" for r, m in groups], fontsize=8
    )
    ax.set_ylabel("similarity to the reference RDM")
    ax.axhline(0, color="0.5", lw=0.6)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return Figure(
        _png(figure),
        f"processing/{RESULTS}/{name}/comparisons: similarity of each candidate RDM to each reference RDM "
        f"(WUC: whitened unbiased cosine); * p < 0.05.",
        f"RDM similarities of {name}",
    )


# --------------------------------------------------------------------------------------------
# The page


SECTIONS = (keypoint_section, stac_section, rollout_section, activations_section, encoding_section, rsa_section)

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table.meta td { padding: 0.1em 1em 0.1em 0; vertical-align: top; } table.meta td:first-child { color: #666; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1em 0 2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; } p.absent { color: #a33; } nav a { margin-right: 1em; }
.small { font-size: 0.85em; color: #666; }
"""


def _header(nwbfile, path, sections):
    from .inspection import describe

    subject = nwbfile.subject
    rows = [
        ("session", f"{nwbfile.session_id or '(no id)'} ({nwbfile.identifier})"),
        ("start", nwbfile.session_start_time.isoformat()),
        ("description", nwbfile.session_description),
    ]
    if subject is not None:
        rows.append(("subject", f"{subject.subject_id}: {subject.species}, sex {subject.sex}, age {subject.age}"))
    else:
        rows.append(("subject", "none"))
    if nwbfile.lab or nwbfile.institution:
        rows.append(("lab", ", ".join(x for x in (nwbfile.lab, nwbfile.institution) if x)))
    if nwbfile.experimenter:
        rows.append(("experimenter", "; ".join(nwbfile.experimenter)))
    rows.append(("file", f"{Path(path).name} ({Path(path).stat().st_size / 1e6:.1f} MB)"))
    table = "\n".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    absent = [s.absent for s in sections if s.absent]
    parts = [
        f"<h1>MIMIC session report: {html.escape(str(nwbfile.session_id or Path(path).stem))}</h1>",
        f"<p class='small'>made by mimic_nwb {html.escape(__version__)} on "
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}</p>",
        f"<table class='meta'>{table}</table>",
        "<nav>" + "".join(f"<a href='#{s.key}'>{html.escape(s.title)}</a>" for s in sections) + "</nav>",
        "<h2 id='contents'>What the file holds</h2>",
        "<pre>" + html.escape("\n".join(describe(nwbfile))) + "</pre>",
    ]
    if absent:
        parts.append(
            "<p>Absent from this session:</p><ul>"
            + "".join(f"<li class='absent'>{html.escape(a)}</li>" for a in absent)
            + "</ul>"
        )
    return "\n".join(parts)


def _section_html(section):
    parts = [f"<section id='{section.key}'>", f"<h2>{html.escape(section.title)}</h2>"]
    if section.absent:
        parts.append(f"<p class='absent'>{html.escape(section.absent)}</p>")
    for figure in section.figures:
        parts.append(
            f"<figure><img alt='{html.escape(figure.alt, quote=True)}' src='data:image/png;base64,{figure.png_base64}'>"
            f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
        )
    parts += [f"<p class='small'>{html.escape(note)}</p>" for note in section.notes]
    parts.append("</section>")
    return "\n".join(parts)


def build_report(nwbfile, path):
    """The HTML page (str) of an open session; ``path`` is the file (for its name and size)."""
    sections = []
    for make in SECTIONS:
        sections.append(make(nwbfile, path) if make is rollout_section else make(nwbfile))
    title = html.escape(f"MIMIC report {nwbfile.session_id or Path(path).stem}")
    body = _header(nwbfile, path, sections) + "\n" + "\n".join(_section_html(s) for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    ), sections


def write_report(session, out):
    """Write the report of a session to ``out`` (HTML, written beside it then renamed); return a summary line."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give the HTML file to write, e.g. {out / 'report.html'}")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    with read_session(session) as nwbfile:
        page, sections = build_report(nwbfile, session)
    fd, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    shown = [s.key for s in sections if s.figures]
    missing = [s.key for s in sections if s.absent]
    figures = sum(len(s.figures) for s in sections)
    return f"wrote {out}: {figures} figures ({', '.join(shown) or 'none'})" + (
        f"; absent: {', '.join(missing)}" if missing else ""
    )
