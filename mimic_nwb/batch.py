"""Many sessions at once: the same stages over a list of sessions, on Dask ``distributed``.

One Dask task per session runs that session's stages in order (one writer per session file, so
the session lock is never contended by the batch itself); sessions run in parallel on the
workers. A failing stage ends its session with a one-line error and the other sessions go on.
A stage whose result is already in the session (its ``processing/mimic/...`` name, or the keypoints,
units or labels of an import) is skipped, so a rerun resumes where the last one stopped.

By default a :class:`distributed.LocalCluster` sized to the machine runs the tasks (one process per
core, one thread each); ``scheduler="tcp://host:8786"`` (or a :class:`distributed.Client`) uses an
existing cluster instead, e.g. one started by dask-jobqueue on SLURM. Every worker's BLAS and XLA
thread pools are pinned (one thread each by default): parallelism comes from running sessions side
by side, and a worker whose NumPy grabbed every core would slow all the others down.

Sessions come from a manifest (YAML or CSV: the session path plus per-session inputs such as the
keypoints file), a folder of ``.nwb`` files, or a local dandiset folder (``sub-*/*.nwb``).
"""

import csv
import dataclasses
import importlib
import inspect
import os
import time
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from distributed import WorkerPlugin

from .errors import InputError

# Per-session inputs a manifest may give, and the import stage that reads each one.
SESSION_INPUTS = {
    "keypoints": "import_keypoints",
    "units": "import_units",
    "labels": "import_labels",
    "checkpoint": "train_controller",
}


@dataclass(frozen=True)
class Stage:
    """How the batch runs one pipeline stage on one session.

    ``function`` is ``"module:callable"`` (imported when used; ``"module:new|old"`` takes the
    first name the module has);
    it is called as ``function(session, [input,] **keyword_options, **configs)``. ``configs`` maps
    a keyword argument of the function to ``"module:ConfigClass"``: an option whose key is a field
    of that dataclass goes into it. ``results`` gives, for the stage's options, the HDF5 paths in
    the session whose presence means the stage is done. ``input`` names the per-session input
    passed as the second positional argument; ``defaults`` are options the batch sets unless
    given (e.g. one STAC process per session: sessions already run in parallel).
    """

    function: str
    results: Callable[[dict], tuple[str, ...]]
    configs: Mapping[str, str] = field(default_factory=dict)
    input: str | None = None
    input_default: Callable[[Path], Path] | None = None
    defaults: Mapping[str, object] = field(default_factory=dict)

    def callable(self):
        # "module:new|old": the first name the module has (a stage renamed in its module)
        module, _, names = self.function.partition(":")
        module = importlib.import_module(module)
        for name in names.split("|"):
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {module.__name__!r} has none of {names.replace('|', ', ')}")

    def config_classes(self):
        """``{argument: dataclass}``: the table's configs, plus every argument of the function
        annotated with a dataclass (``config: StacConfig | None``), so a stage that gains a config
        needs no change here."""
        classes = {}
        for argument, reference in self.configs.items():
            module, _, name = reference.partition(":")
            classes[argument] = getattr(importlib.import_module(module), name)
        try:
            hints = typing.get_type_hints(self.callable())
        except Exception:  # noqa: BLE001  (unresolvable annotations: use the table only)
            hints = {}
        for argument, hint in hints.items():
            if argument in classes or argument == "return":
                continue
            for candidate in (hint, *typing.get_args(hint)):
                if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
                    classes[argument] = candidate
                    break
        return classes


def _mimic(default):
    return lambda options: (f"processing/mimic/{options.get('name', default)}",)


def _rollout_results(options):
    mode = options.get("mode") or "closed_loop"
    name = options.get("name") or f"SimulationRollout_{mode}"
    if mode == "expert":  # the expert has no network: no activations
        return (f"processing/mimic/{name}",)
    return (
        f"processing/mimic/{name}",
        f"processing/mimic/NetworkActivations_{name.removeprefix('SimulationRollout_')}",
    )


# Stage name -> how to run it. The names are the CLI subcommands' with underscores; "simulate" is
# a controller rollout (closed loop unless simulate.mode says otherwise), "inverse_dynamics" the replay.
STAGES = {
    "import_keypoints": Stage(
        "mimic_nwb.importers.keypoints:import_keypoints",
        input="keypoints",
        configs={"config": "mimic_nwb.importers.keypoints:KeypointImportConfig"},
        results=lambda options: (f"processing/behavior/{options.get('name', 'PoseEstimation')}",),
    ),
    "import_units": Stage("mimic_nwb.importers.units:import_units", input="units", results=lambda options: ("units",)),
    "import_labels": Stage(
        "mimic_nwb.importers.labels:import_labels",
        input="labels",
        results=lambda options: (f"intervals/{options.get('name', 'behavior_labels')}",),
    ),
    "stac": Stage(
        "mimic_nwb.stac.nwb:stac",
        configs={"config": "mimic_nwb.stac:StacConfig"},
        defaults={"n_workers": 1, "progress": False},
        results=_mimic("StacRegistration"),
    ),
    "inverse_dynamics": Stage(
        "mimic_nwb.simulate.nwb:inverse_dynamics",
        configs={"config": "mimic_nwb.simulate:InverseDynamicsConfig"},
        results=_mimic("SimulationRollout_inverse_dynamics"),
    ),
    "train_controller": Stage(
        "mimic_nwb.simulate.nwb:train_controller",
        configs={"config": "mimic_nwb.controller:ControllerConfig", "training": "mimic_nwb.controller:TrainingConfig"},
        input="checkpoint",
        input_default=lambda path: path.with_name(f"{path.stem}.controller.npz"),
        results=_mimic("ControllerNetwork"),
    ),
    "simulate": Stage(
        "mimic_nwb.simulate.nwb:simulate",
        configs={"config": "mimic_nwb.simulate:RolloutConfig"},
        results=_rollout_results,
    ),
    "encode": Stage(
        "mimic_nwb.encoding.nwb:encode",
        configs={"config": "mimic_nwb.encoding:EncodingConfig"},
        defaults={"progress": False},
        results=_mimic("EncodingResults"),
    ),
    "rsa": Stage("mimic_nwb.rsa.nwb:rsa", results=_mimic("RepresentationalSimilarity")),
}
# Options that ask a stage to redo its result: the batch then runs it even when the result exists.
REPLACE_OPTIONS = ("replace", "replace_existing")
STATUSES = ("done", "skipped", "failed", "not run")


@dataclass(frozen=True)
class BatchSession:
    """One session of a batch: its file, its inputs (keypoints, units, labels, checkpoint files)
    and options that override the batch's for this session only (``{stage: {key: value}}``)."""

    path: Path
    name: str
    inputs: Mapping[str, Path] = field(default_factory=dict)
    options: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


@dataclass(frozen=True)
class StageOutcome:
    """What happened to one stage of one session: ``status`` is done, skipped (result already
    there), failed (``error``: one line) or not run (an earlier stage of the session failed)."""

    session: str
    stage: str
    status: str
    seconds: float = 0.0
    error: str = ""
    summary: str = ""


@dataclass
class BatchResult:
    """The outcome of :func:`run_batch`: one :class:`StageOutcome` per session x stage."""

    sessions: list[BatchSession]
    stages: tuple[str, ...]
    outcomes: list[StageOutcome]
    wall_seconds: float
    scheduler: str
    n_workers: int

    @property
    def ok(self) -> bool:
        """True when no stage failed."""
        return all(o.status != "failed" for o in self.outcomes)

    @property
    def failed_sessions(self) -> list[str]:
        return [
            s.name for s in self.sessions if any(o.session == s.name and o.status == "failed" for o in self.outcomes)
        ]

    def table(self):
        """Tidy table (pandas): session, stage, status, seconds, error; in session then stage order."""
        import pandas as pd

        order = {s.name: i for i, s in enumerate(self.sessions)}
        stage_order = {s: i for i, s in enumerate(self.stages)}
        rows = sorted(self.outcomes, key=lambda o: (order.get(o.session, 0), stage_order.get(o.stage, 0)))
        return pd.DataFrame(
            [(o.session, o.stage, o.status, o.seconds, o.error) for o in rows],
            columns=["session", "stage", "status", "seconds", "error"],
        )

    def status(self, session, stage) -> str:
        for o in self.outcomes:
            if o.session == session and o.stage == stage:
                return o.status
        raise KeyError((session, stage))

    def summary(self) -> str:
        """A session x stage table (status and seconds), the errors, and the totals."""
        cells = {(o.session, o.stage): o for o in self.outcomes}

        def cell(outcome):
            if outcome is None:
                return "-"
            if outcome.status in ("done", "failed"):
                return f"{outcome.status} {outcome.seconds:.1f} s"
            return outcome.status

        header = ["session", *self.stages]
        rows = [[s.name, *(cell(cells.get((s.name, stage))) for stage in self.stages)] for s in self.sessions]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header, *rows]]
        lines.insert(1, "  ".join("-" * w for w in widths))
        errors = [o for o in self.outcomes if o.status == "failed"]
        if errors:
            lines.append("errors:")
            lines += [f"  {o.session} [{o.stage}]: {o.error}" for o in errors]
        counts = {status: sum(o.status == status for o in self.outcomes) for status in STATUSES}
        lines.append(
            f"{len(self.sessions)} session(s), {len(self.sessions) - len(self.failed_sessions)} without failure; "
            f"stages: {', '.join(f'{n} {s}' for s, n in counts.items() if n)}; {self.wall_seconds:.1f} s on "
            f"{self.n_workers} worker(s) ({self.scheduler})"
        )
        return "\n".join(lines)


# --- sessions -------------------------------------------------------------------------------------


def _entry(raw, base, where):
    """A manifest entry (a path, or a mapping: path, inputs, options) as a BatchSession."""
    base = base or Path.cwd()
    if isinstance(raw, (str, os.PathLike)):
        raw = {"path": raw}
    if not isinstance(raw, Mapping) or not raw.get("path"):
        raise InputError(f"{where}: expected a session path or a mapping with 'path', got {raw!r}")
    unknown = set(raw) - {"path", "name", "options", *SESSION_INPUTS} - {k for k in raw if "." in str(k)}
    if unknown:
        raise InputError(
            f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))} "
            f"(expected path, name, options, {', '.join(SESSION_INPUTS)} or STAGE.KEY options)"
        )
    path = (base / Path(str(raw["path"])).expanduser()).resolve()
    inputs = {key: (base / Path(str(raw[key])).expanduser()).resolve() for key in SESSION_INPUTS if raw.get(key)}
    options = dict(raw.get("options") or {})
    options.update({k: v for k, v in raw.items() if "." in str(k) and v not in (None, "")})
    try:
        relative = path.relative_to(base.resolve())
    except ValueError:
        relative = path
    return BatchSession(
        path=path,
        name=str(raw.get("name") or relative),
        inputs=inputs,
        options=parse_options(options, f"{where}: options"),
    )


def read_manifest(path):
    """Sessions and batch options from a YAML or CSV manifest; relative paths are from its folder.

    YAML: a list of entries, or ``{sessions: [...], options: {STAGE.KEY: value}}``. An entry is a
    session path, or a mapping with ``path`` and optionally ``name``, the inputs ``keypoints``,
    ``units``, ``labels``, ``checkpoint`` (files the import stages read; the checkpoint is where
    train_controller saves) and ``options`` for that session only. CSV: a header with ``path``,
    any of the inputs, and ``STAGE.KEY`` columns (per-session options; empty cells are ignored).
    Returns ``(sessions, options)``.
    """
    import yaml

    path = Path(path)
    base = path.parent.resolve()
    if path.suffix.lower() in (".csv", ".tsv"):
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
        if not rows or "path" not in rows[0]:
            raise InputError(f"{path}: a CSV manifest needs a header with a 'path' column and one row per session")
        entries = [{k.strip(): _cell(v) for k, v in row.items() if k and v not in (None, "")} for row in rows]
        sessions = [_entry(e, base, f"{path}: row {i + 2}") for i, e in enumerate(entries)]
        return _unique(sessions, path), {}
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    options = {}
    if isinstance(document, Mapping):
        options = parse_options(document.get("options") or {}, f"{path}: options")
        document = document.get("sessions")
    if not isinstance(document, list) or not document:
        raise InputError(f"{path}: expected a list of sessions (or 'sessions:' with one)")
    sessions = [_entry(e, base, f"{path}: session {i + 1}") for i, e in enumerate(document)]
    return _unique(sessions, path), options


def _cell(text):
    """A CSV cell: numbers and booleans as YAML reads them, anything else as text."""
    import yaml

    text = text.strip()
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, list)) else text


def _unique(sessions, source):
    seen = {}
    for s in sessions:
        if s.path in seen:
            raise InputError(f"{source}: session {s.path} is listed twice")
        seen[s.path] = s
    return sessions


def find_sessions(source):
    """Sessions of a manifest (.yaml/.yml/.csv/.tsv), a folder of .nwb files, or a dandiset folder.

    A folder gives its ``*.nwb`` files and those one level down in ``sub-*/`` (the DANDI layout),
    sorted. Returns ``(sessions, options)`` (options only from a YAML manifest).
    """
    source = Path(source)
    if not source.exists():
        raise InputError(f"{source}: no such manifest or folder")
    if source.is_file():
        if source.suffix.lower() not in (".yaml", ".yml", ".csv", ".tsv"):
            raise InputError(f"{source}: expected a manifest (.yaml, .yml, .csv, .tsv) or a folder of .nwb files")
        return read_manifest(source)
    paths = sorted({*source.glob("*.nwb"), *source.glob("sub-*/*.nwb")})
    if not paths:
        raise InputError(f"{source}: no .nwb files in the folder or in its sub-*/ folders")
    return [_entry(p, source.resolve(), str(source)) for p in paths], {}


# --- options --------------------------------------------------------------------------------------


def parse_options(options, where="--option"):
    """``{"stage.key": value}``, ``{"stage": {"key": value}}`` or ``["stage.key=value"]`` as
    ``{stage: {key: value}}``; ``stage.key=value`` strings have their values read as YAML (numbers,
    booleans, ``[lists]``)."""
    import yaml

    parsed = {}
    items = []
    if isinstance(options, Mapping):
        for key, value in options.items():
            if isinstance(value, Mapping) and "." not in str(key):
                items += [(f"{key}.{k}", v) for k, v in value.items()]
            else:
                items.append((str(key), value))
    else:
        for text in options:
            key, sep, value = str(text).partition("=")
            if not sep:
                raise InputError(f"{where} {text!r}: expected STAGE.KEY=VALUE, e.g. stac.smoothness_weight=0.1")
            try:
                items.append((key.strip(), yaml.safe_load(value) if value.strip() else None))
            except yaml.YAMLError:
                items.append((key.strip(), value))
    for key, value in items:
        stage, _, name = key.partition(".")
        stage = stage.replace("-", "_")  # as --stages: the subcommand spelling works too
        if not stage or not name:
            raise InputError(f"{where} {key!r}: expected STAGE.KEY, e.g. stac.smoothness_weight")
        if stage not in STAGES:
            raise InputError(f"{where} {key!r}: unknown stage {stage!r} (stages: {', '.join(STAGES)})")
        parsed.setdefault(stage, {})[name] = value
    return parsed


def parse_stages(stages):
    """``"stac,inverse_dynamics"`` or a list, as a tuple of known stage names (dashes allowed)."""
    names = [s.strip().replace("-", "_") for s in (stages.split(",") if isinstance(stages, str) else stages)]
    names = [n for n in names if n]
    if not names:
        raise InputError(f"--stages: none given (stages: {', '.join(STAGES)})")
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise InputError(f"--stages: unknown stage(s) {', '.join(unknown)} (stages: {', '.join(STAGES)})")
    if len(set(names)) != len(names):
        raise InputError(f"--stages {','.join(names)}: a stage is listed twice")
    return tuple(names)


def stage_call(stage_name, options):
    """The keyword arguments of one stage call: options split into config objects and arguments.

    Raises InputError naming an option the stage does not have or a value its config refuses.
    """
    stage = STAGES[stage_name]
    options = {**stage.defaults, **options}
    classes = stage.config_classes()
    parameters = inspect.signature(stage.callable()).parameters
    # the session and the per-session input are positional: never options
    positional = {*list(parameters)[: 2 if stage.input else 1], *classes}
    config_values = {argument: {} for argument in classes}
    kwargs = {}
    for key, value in options.items():
        owner = next((a for a, cls in classes.items() if key in {f.name for f in dataclasses.fields(cls)}), None)
        if owner is not None:
            # YAML gives lists; the configs hold tuples (frozen, hashable)
            config_values[owner][key] = tuple(value) if isinstance(value, list) else value
        elif key in parameters and key not in positional:
            kwargs[key] = value
        elif key in stage.defaults:
            continue  # a default for a config field this version of the stage no longer has
        else:
            accepted = sorted(
                {f.name for cls in classes.values() for f in dataclasses.fields(cls)} | (set(parameters) - positional)
            )
            raise InputError(
                f"option {stage_name}.{key}: not an option of stage {stage_name} (options: {', '.join(accepted)})"
            )
    for argument, cls in classes.items():
        try:
            kwargs[argument] = cls(**config_values[argument])
        except (TypeError, ValueError) as error:
            raise InputError(f"options of stage {stage_name}: {error}") from None
    return kwargs


def _merged(global_options, session, stage):
    return {**global_options.get(stage, {}), **session.options.get(stage, {})}


# --- one session (runs on a worker) ---------------------------------------------------------------


def _one_line(error):
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(error, InputError) else f"{type(error).__name__}: {message}".rstrip(": ")


def _has_results(path, result_paths):
    import h5py

    with h5py.File(path, "r") as f:
        return all(p in f for p in result_paths)


def run_session(session: BatchSession, stages, options) -> list[StageOutcome]:
    """Run ``stages`` in order on one session; return one outcome per stage.

    A stage whose results are in the file is skipped (unless its options ask to replace them);
    the first failure ends the session (later stages: not run). Never raises for a stage error.
    """
    from .session import check_session_file, session_lock

    outcomes = []
    failed = False
    lock_checked = False
    for name in stages:
        if failed:
            outcomes.append(StageOutcome(session.name, name, "not run"))
            continue
        stage = STAGES[name]
        stage_options = _merged(options, session, name)
        started = time.perf_counter()
        try:
            check_session_file(session.path)
            replace = any(stage_options.get(k) for k in REPLACE_OPTIONS)
            if not replace and _has_results(session.path, stage.results(stage_options)):
                outcomes.append(StageOutcome(session.name, name, "skipped"))
                continue
            if not lock_checked:
                # Fail at once (not after minutes of computing) when another writer holds the session.
                with session_lock(session.path):
                    pass
                lock_checked = True
            args = [session.path]
            if stage.input is not None:
                source = session.inputs.get(stage.input)
                if source is None and stage.input_default is not None:
                    source = stage.input_default(session.path)
                if source is None:
                    raise InputError(f"{session.path}: no '{stage.input}' input for stage {name} in the manifest")
                args.append(source)
            returned = stage.callable()(*args, **stage_call(name, stage_options))
            # stages return a summary line, (summary, result, ...), or a result with .summary()
            summary = returned[0] if isinstance(returned, tuple) else returned
            if callable(getattr(summary, "summary", None)):
                summary = summary.summary()
            outcomes.append(
                StageOutcome(session.name, name, "done", time.perf_counter() - started, summary=str(summary))
            )
        except Exception as error:  # noqa: BLE001  (any stage error, "session is in use" included, fails this session only)
            failed = True
            outcomes.append(
                StageOutcome(session.name, name, "failed", time.perf_counter() - started, error=_one_line(error))
            )
    return outcomes


# --- workers --------------------------------------------------------------------------------------


def thread_environment(threads=1):
    """Environment that caps BLAS/OpenMP and XLA thread pools at ``threads`` per worker."""
    xla = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" if threads == 1 else ""
    env = {
        var: str(threads)
        for var in (
            "OMP_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "MKL_NUM_THREADS",
            "NUMEXPR_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS",
        )
    }
    if xla:
        env["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), xla])).strip()
    return env


class PinThreads(WorkerPlugin):
    """Caps a worker's BLAS/OpenMP and XLA threads (for workers started elsewhere, e.g. on SLURM).

    The environment variables act on libraries the worker has not loaded yet (XLA reads its flags
    when JAX first starts); threadpoolctl caps the BLAS libraries already loaded.
    """

    name = "mimic-nwb-pin-threads"

    def __init__(self, threads=1):
        self.threads = threads
        self._limits = None

    def setup(self, worker):
        os.environ.update(thread_environment(self.threads))
        from threadpoolctl import threadpool_limits

        self._limits = threadpool_limits(self.threads)

    def teardown(self, worker):
        if self._limits is not None:
            self._limits.restore_original_limits()


def default_n_workers(n_sessions):
    """One worker per core this process may use, at most one per session."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, n_sessions))


# --- the batch ------------------------------------------------------------------------------------


def run_batch(
    sessions,
    stages,
    options=None,
    scheduler=None,
    n_workers=None,
    threads_per_worker=1,
    progress=True,
    log=print,
) -> BatchResult:
    """Run ``stages`` (in order) on every session, sessions in parallel on Dask; return a BatchResult.

    Args:
        sessions: a manifest or folder path (see :func:`find_sessions`), or a list of session paths
            or :class:`BatchSession`.
        stages: stage names in order, a list or ``"stac,inverse_dynamics"`` (see ``STAGES``).
        options: ``{"stage.key": value}`` or ``{stage: {key: value}}``: fields of the stage's
            config (e.g. ``stac.smoothness_weight``, ``encode.bin_size`` in s) or arguments of its
            function (e.g. ``import_keypoints.rate`` in Hz, ``stac.name``). They override a YAML
            manifest's options; a manifest entry's own options override both.
        scheduler: address of an existing Dask scheduler, or a ``distributed.Client``; None starts a
            LocalCluster of ``n_workers`` processes (default: one per core, at most one per session).
        threads_per_worker: sessions each worker runs at once; BLAS/XLA threads are pinned to 1.
        progress: a progress bar over sessions (tqdm) on stderr.
        log: where one line per finished session goes (None: nowhere).

    Bad options, stages or manifests raise InputError before anything runs; a stage failing on a
    session is reported in the result, not raised.
    """
    from distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    stages = parse_stages(stages)
    manifest_options = {}
    if isinstance(sessions, (str, os.PathLike)):
        sessions, manifest_options = find_sessions(sessions)
    else:
        sessions = [s if isinstance(s, BatchSession) else _entry(s, None, "sessions") for s in sessions]
        _unique(sessions, "sessions")
    if not sessions:
        raise InputError("sessions: none given")
    merged = parse_options(manifest_options)
    for stage, values in parse_options(options or {}).items():
        merged.setdefault(stage, {}).update(values)
    for stage in merged:
        if stage not in stages:
            raise InputError(f"option {stage}.*: stage {stage} is not among --stages {','.join(stages)}")
    # Check every option against the stage's signature and configs now, not on the workers.
    for session in sessions:
        for stage in stages:
            stage_call(stage, _merged(merged, session, stage))

    started = time.perf_counter()
    cluster = None
    own_client = not hasattr(scheduler, "submit")
    import dask

    # Worker processes that are not daemons may start their own (e.g. a STAC run with
    # stac.n_workers > 1 starts a process pool).
    with dask.config.set({"distributed.worker.daemon": False}):
        if scheduler is None:
            n_workers = n_workers or default_n_workers(len(sessions))
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                env=thread_environment(1),
                dashboard_address=None,
            )
            client = Client(cluster)
            where = f"local cluster, {n_workers} process(es) x {threads_per_worker} thread(s)"
        else:
            client = Client(scheduler) if own_client else scheduler
            where = f"scheduler {client.scheduler.address}"
        try:
            client.register_plugin(PinThreads(1))
            n_workers = len(client.nthreads()) or (n_workers or 0)
            futures = {
                client.submit(
                    run_session, session, stages, merged, key=f"mimic-nwb-session-{i}-{session.path.name}", pure=False
                ): session
                for i, session in enumerate(sessions)
            }
            outcomes = []
            bar = tqdm(total=len(futures), desc="sessions", unit="session", disable=not progress)
            for future in as_completed(futures):
                session = futures[future]
                try:
                    result = future.result()
                except Exception as error:  # noqa: BLE001  (a worker lost: this session fails, not the batch)
                    result = [StageOutcome(session.name, stages[0], "failed", error=f"worker: {_one_line(error)}")]
                    result += [StageOutcome(session.name, s, "not run") for s in stages[1:]]
                outcomes += result
                bar.update(1)
                if log is not None:
                    line = ", ".join(f"{o.stage} {o.status}" for o in result)
                    failure = next((o.error for o in result if o.status == "failed"), "")
                    (bar.write if progress else log)(f"{session.name}: {line}" + (f" ({failure})" if failure else ""))
            bar.close()
        finally:
            if own_client:
                client.close()
            if cluster is not None:
                cluster.close()
    return BatchResult(
        sessions=list(sessions),
        stages=stages,
        outcomes=outcomes,
        wall_seconds=time.perf_counter() - started,
        scheduler=where,
        n_workers=n_workers,
    )
