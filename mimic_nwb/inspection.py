"""``mimic-nwb inspect``: what a session holds, pynwb validation, nwbinspector with the ndx-mimic checks.

(Named ``inspection``, not ``inspect``: a module of that name would shadow the standard library's.)
"""

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ndx_pose import PoseEstimation
from pynwb import validate
from pynwb.base import TimeSeries

from ndx_mimic import NetworkActivations

from .session import Session, check_session_file, read_session
from .storage import verify_datasets


def _time_range(series):
    if series.timestamps is not None:
        times = series.get_timestamps()
        return f"{times[0]:.3f}-{times[-1]:.3f} s" if len(times) else "empty"
    n = series.data.shape[0]
    return f"{series.starting_time:.3f}-{series.starting_time + (n - 1) / series.rate:.3f} s @ {series.rate:g} Hz"


def describe(nwbfile):
    """Readable lines about what a session holds: subject, units, keypoints, results."""
    lines = [f"session {nwbfile.session_id} ({nwbfile.identifier}), start {nwbfile.session_start_time.isoformat()}"]
    subject = nwbfile.subject
    if subject is not None:
        lines.append(f"subject {subject.subject_id}: {subject.species}, sex {subject.sex}, age {subject.age}")
    if nwbfile.electrodes is not None:
        lines.append(f"electrodes: {len(nwbfile.electrodes)} in {len(nwbfile.electrode_groups)} groups")
    if nwbfile.units is not None:
        units = nwbfile.units
        regions = units["brain_region"][:] if "brain_region" in units.colnames else []
        counts = {r: int(np.sum(np.asarray(regions) == r)) for r in sorted(set(regions))}
        lines.append(f"units: {len(units)} {counts if counts else ''}".rstrip())
    for name, intervals in (nwbfile.intervals or {}).items():
        lines.append(f"intervals/{name}: {len(intervals)} rows")
    for module_name, module in nwbfile.processing.items():
        for name, obj in module.data_interfaces.items():
            lines.append(f"processing/{module_name}/{name} [{type(obj).__name__}]")
            lines.extend(f"    {line}" for line in _describe_object(obj))
    return lines


def _describe_object(obj):
    if isinstance(obj, PoseEstimation):
        series = list(obj.pose_estimation_series.values())
        if not series:
            return ["no series"]
        data = np.stack([np.asarray(s.data[:]) for s in series], axis=1)
        missing = np.isnan(data).any(axis=2).sum(axis=0)
        lines = [f"{data.shape[0]} frames x {data.shape[1]} keypoints, {_time_range(series[0])}, unit {series[0].unit}"]
        lines.append(
            "missing detections: " + (", ".join(f"{s.name} {m}" for s, m in zip(series, missing) if m) or "none")
        )
        return lines
    series = [
        (name, value)
        for name, value in sorted(obj.fields.items())
        if isinstance(value, TimeSeries) and value.parent is obj
    ]
    children = obj.layer_activations if isinstance(obj, NetworkActivations) else {}
    series += [(name, layer) for name, layer in children.items()]
    lines = [f"{name}: {tuple(s.data.shape)} {s.data.dtype} {s.unit}, {_time_range(s)}" for name, s in series]
    if hasattr(obj, "colnames") and hasattr(obj, "__len__"):
        lines.append(f"{len(obj)} rows, columns {', '.join(obj.colnames)}")
    if hasattr(obj, "mode"):
        lines.append(f"mode {obj.mode}")
    return lines


@dataclass(frozen=True)
class InspectionResult:
    """What :func:`inspect_session` found: ``report`` (the lines: contents, validation, findings)
    and ``ok`` (false when a dataset is damaged, pynwb validation fails, or nwbinspector reports
    a CRITICAL or ERROR finding)."""

    path: Path
    report: tuple[str, ...]
    ok: bool

    @property
    def text(self):
        """The whole report, one finding a line (what ``mimic-nwb inspect`` prints)."""
        return "\n".join(self.report)

    def summary(self):
        """One line: the session and whether it passed."""
        verdict = "ok" if self.ok else "problems found"
        checks = [line for line in self.report if line.startswith(("pynwb validation", "nwbinspector", "integrity"))]
        return f"{self.path}: {verdict} ({'; '.join(checks)})"


def inspect_session(session, *, run_inspector=True) -> InspectionResult:
    """Describe a session, validate it with pynwb, run nwbinspector (with the ndx-mimic checks).

    ``session`` is a session path or a :class:`~mimic_nwb.session.Session` (its file is read
    again: validation and nwbinspector read files). Returns an :class:`InspectionResult`.

    Every dataset is read once first, chunk by chunk (`mimic_nwb.storage.verify_datasets`): a
    damaged chunk (failed checksum or decompression) gives one ``CORRUPT dataset /...`` line per
    dataset, ``ok`` false (exit 1 from the CLI), and the rest of the inspection is skipped, since
    it would read the same damaged data.
    """
    path = session.path if isinstance(session, Session) else Path(session)
    check_session_file(path)
    corrupt = verify_datasets(path)
    if corrupt:
        lines = [f"CORRUPT {problem}" for problem in corrupt]
        lines.append(
            f"integrity: {len(corrupt)} dataset(s) of {path} cannot be read; the file is damaged "
            "(restore it from a copy); validation and nwbinspector were skipped"
        )
        return InspectionResult(path, tuple(lines), False)
    with warnings.catch_warnings(record=True) as read_warnings:
        warnings.simplefilter("always")
        with read_session(path) as nwbfile:
            lines = describe(nwbfile)
    # e.g. the ndx-mimic constructors' shape checks, which warn instead of failing on read
    problems = sorted({str(w.message) for w in read_warnings if issubclass(w.category, UserWarning)})
    errors = validate(path=str(path))
    lines.append(f"pynwb validation: {'no errors' if not errors else f'{len(errors)} error(s)'}")
    lines.extend(f"    {error}" for error in errors)
    ok = not errors
    if run_inspector:
        import nwbinspector

        import ndx_mimic.inspector_checks  # noqa: F401  (registers the ndx-mimic checks)

        messages = list(nwbinspector.inspect_nwbfile(nwbfile_path=str(path)))
        lines.append(f"nwbinspector (with ndx-mimic checks): {len(messages)} finding(s)")
        for message in sorted(messages, key=lambda m: -m.importance.value):
            lines.append(
                f"    {message.importance.name} {message.check_function_name} {message.location}: {message.message}"
            )
        ok = ok and not any(m.importance.name in ("CRITICAL", "PYNWB_VALIDATION", "ERROR") for m in messages)
    for problem in problems:
        lines.append(f"warning while reading: {problem}")
    return InspectionResult(path, tuple(lines), ok)
