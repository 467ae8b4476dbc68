"""``mimic-nwb render``: MuJoCo offscreen pictures of a session's bodies (PNG still, MP4, PNG folder).

Two views:

- a **registration**: the registered body model (the stored ``BodyModel.mjcf`` compiled with its
  assets, posed by the StacRegistration's qpos) with the measured keypoints drawn as magenta
  spheres joined by the skeleton's edges, moved into the model frame by ``world_to_model``;
  the model's own keypoint sites show as small dark spheres, so the fit is visible;
- a **rollout beside its reference**: two viewports side by side, the simulated body (left)
  and the registration it imitates (right, with its keypoints). Rollout steps are matched to
  reference frames by time on the session clock.

Each viewport has a tracking camera: it looks at the root body of its own model from a fixed
side direction and distance, every frame, so any frame renders the same alone or in a video.
Frames the registration did not fit (qpos NaN) hold the last fitted pose.

Rendering is offscreen OpenGL. On a machine without a display use OSMesa (software, CPU):
this module sets ``MUJOCO_GL=osmesa`` when the variable is unset, before importing MuJoCo,
and creates its OpenGL context from the backend the variable names at render time (so it also
works when MuJoCo was imported earlier by another module). ``MUJOCO_GL=egl`` uses a GPU.

Videos are written with imageio-ffmpeg (H.264, yuv420p, so width and height must be even),
one frame at a time, and session data are read in chunks: memory stays bounded for any length.
Outputs appear complete or not at all (written beside the target, then renamed).
"""

import os

# Before MuJoCo's first import, which reads it (osmesa: software rendering, no display needed).
os.environ.setdefault("MUJOCO_GL", "osmesa")

import contextlib  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from ndx_mimic import SimulationRollout, StacRegistration  # noqa: E402

from .errors import InputError  # noqa: E402
from .session import RESULTS_MODULE, find_result, find_results, opened  # noqa: E402

MAX_SIZE = 4096  # pixels, per side (offscreen buffer)
CHUNK_FRAMES = 256  # frames read from the file at a time

KEYPOINT_RGBA = (1.0, 0.0, 0.85, 1.0)  # measured keypoints: magenta, unlike anything in the model
BODY_RGBA = {"registration": (0.85, 0.68, 0.52, 1.0), "rollout": (0.55, 0.7, 0.9, 1.0)}
FLOOR_RGBA = (0.3, 0.32, 0.36, 1.0)
GRID_RGBA = (0.45, 0.47, 0.52, 1.0)  # floor lines: show the motion the tracking camera hides
GRID_LINES = 21  # per direction, centred on the body
CAMERA_AZIMUTH = 90.0  # degrees: looking along +y, the side of a body heading along +x
CAMERA_ELEVATION = -25.0  # degrees


class RenderingError(RuntimeError):
    """The machine cannot render (no OpenGL context for the MUJOCO_GL backend)."""


# --------------------------------------------------------------------------------------------
# What a viewport shows


@dataclass
class BodyTrack:
    """One body over time: a compiled model, its qpos rows and optionally measured keypoints.

    ``qpos`` is (T, nq) (an HDF5 dataset is fine: rows are read in chunks); ``keypoints`` a list
    of K (T, 3) arrays in the keypoints' world frame, metres, moved to the model frame by
    ``world_to_model`` (4 x 4); ``edges`` (E, 2) keypoint index pairs; ``rows`` maps output frame
    i to the row drawn (None: the identity).
    """

    label: str
    model: mujoco.MjModel
    qpos: object
    times: np.ndarray
    colour: tuple = BODY_RGBA["registration"]
    keypoints: list | None = None
    keypoint_scale: float = 1.0
    world_to_model: np.ndarray | None = None
    edges: np.ndarray | None = None
    rows: np.ndarray | None = None

    def row_of(self, frames):
        return np.asarray(frames) if self.rows is None else self.rows[frames]

    def read(self, frames):
        """qpos (n, nq) and keypoints (n, K, 3) in the model frame (or None) of output ``frames``."""
        rows = self.row_of(frames)
        first, last = int(rows.min()), int(rows.max()) + 1
        local = rows - first
        qpos = np.asarray(self.qpos[first:last], dtype=float)[local]
        if not self.keypoints:
            return qpos, None
        points = np.stack([np.asarray(k[first:last], dtype=float)[local] for k in self.keypoints], axis=1)
        points = points * self.keypoint_scale
        if self.world_to_model is not None:
            points = points @ self.world_to_model[:3, :3].T + self.world_to_model[:3, 3]
        return qpos, points


# --------------------------------------------------------------------------------------------
# Offscreen rendering


def compile_body_model(body_model, where):
    """``mujoco.MjModel`` of a stored BodyModel (its MJCF and assets); InputError naming it if it fails."""
    try:
        return mujoco.MjModel.from_xml_string(body_model.mjcf, body_model.assets)
    except Exception as error:  # MuJoCo raises ValueError with a multi-line message
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"{where}: BodyModel '{body_model.name}' does not compile: {first_line}") from None


def _gl_context(width, height):
    """An OpenGL context of the backend MUJOCO_GL names (read now, not at MuJoCo's import)."""
    backend = os.environ.get("MUJOCO_GL", "osmesa").lower()
    try:
        if backend == "osmesa":
            from mujoco.osmesa import GLContext
        elif backend == "egl":
            from mujoco.egl import GLContext
        else:
            from mujoco.glfw import GLContext
        context = GLContext(width, height)
    except Exception as error:
        raise RenderingError(
            f"cannot create an OpenGL context with MUJOCO_GL={backend} ({type(error).__name__}: {error}); "
            "on a machine without a display install OSMesa (Debian: libosmesa6) and set MUJOCO_GL=osmesa"
        ) from None
    context.make_current()
    return context


def _root_body(model):
    """The body of the first free joint (the root), else the first body after the world."""
    free = np.flatnonzero(model.jnt_type == mujoco.mjtJoint.mjJNT_FREE)
    return int(model.jnt_bodyid[free[0]]) if len(free) else min(1, model.nbody - 1)


def _body_size(model, root):
    """How far the body reaches from its root at qpos0, m: sets camera distance and sphere size."""
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    on_body = np.flatnonzero(model.geom_bodyid > 0)
    if not len(on_body):
        return 0.1
    reach = np.linalg.norm(data.geom_xpos[on_body] - data.xpos[root], axis=1) + model.geom_rbound[on_body]
    return float(max(reach.max(), 0.01))


class _Viewport:
    """One body rendered into a ``width`` x ``height`` image with a tracking camera."""

    def __init__(self, track: BodyTrack, width, height):
        self.track = track
        self.model = model = track.model
        self.width, self.height = width, height
        self.rect = mujoco.MjrRect(0, 0, width, height)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        # colours for the picture only: the body one colour, the floor darker
        planes = model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE
        model.geom_rgba[~planes] = track.colour
        model.geom_rgba[planes] = FLOOR_RGBA
        model.geom_matid[:] = -1
        # software rendering: no multisampling and coarser spheres/capsules (about 4x faster)
        model.vis.quality.offsamples = 0
        model.vis.quality.numslices, model.vis.quality.numstacks = 16, 8
        self.data = mujoco.MjData(model)
        self.root = _root_body(model)
        self.size = _body_size(model, self.root)
        num_keypoints = len(track.keypoints or [])
        num_edges = 0 if track.edges is None else len(track.edges)
        extra = num_keypoints + num_edges + 2 * GRID_LINES
        self.scene = mujoco.MjvScene(model, maxgeom=model.ngeom + model.nsite + extra + 100)
        self.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0  # shadows double the rendering time
        self.option = mujoco.MjvOption()
        self.option.sitegroup[:] = 1  # the model's keypoint sites are in group 3
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        self.camera.distance = 1.7 * self.size
        self.camera.azimuth, self.camera.elevation = CAMERA_AZIMUTH, CAMERA_ELEVATION
        self.context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_100)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self.context)
        self.pixels = np.empty((height, width, 3), dtype=np.uint8)
        self.last_qpos = model.qpos0.copy()

    def render(self, qpos, keypoints, text):
        """(height, width, 3) uint8 picture of the body at ``qpos`` with ``keypoints`` (K, 3) or None."""
        model, data, scene = self.model, self.data, self.scene
        if np.all(np.isfinite(qpos)):
            self.last_qpos = qpos  # unfitted frames (NaN) hold the last fitted pose
        data.qpos[:] = self.last_qpos
        mujoco.mj_forward(model, data)
        self.camera.lookat[:] = data.xpos[self.root]
        mujoco.mjv_updateScene(model, data, self.option, None, self.camera, mujoco.mjtCatBit.mjCAT_ALL, scene)
        self._add_floor_grid()
        if keypoints is not None:
            self._add_keypoints(keypoints)
        # each model has its own offscreen framebuffer: bind this one (another viewport may have drawn last)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self.context)
        mujoco.mjr_render(self.rect, scene, self.context)
        top_left, bottom_left = text
        mujoco.mjr_overlay(
            mujoco.mjtFont.mjFONT_NORMAL, mujoco.mjtGridPos.mjGRID_TOPLEFT, self.rect, top_left, "", self.context
        )
        mujoco.mjr_overlay(
            mujoco.mjtFont.mjFONT_NORMAL, mujoco.mjtGridPos.mjGRID_BOTTOMLEFT, self.rect, bottom_left, "", self.context
        )
        mujoco.mjr_readPixels(self.pixels, None, self.rect, self.context)
        return np.flipud(self.pixels)

    def _add_floor_grid(self):
        """Lines on the floor (z = 0) every ``size`` / 2 m, fixed in the world, around the body."""
        scene = self.scene
        spacing = self.size / 2
        centre = np.round(self.data.xpos[self.root][:2] / spacing) * spacing
        half = spacing * (GRID_LINES // 2)
        rgba = np.asarray(GRID_RGBA, dtype=np.float32)
        for offset in spacing * (np.arange(GRID_LINES) - GRID_LINES // 2):
            for start, stop in (([offset, -half], [offset, half]), ([-half, offset], [half, offset])):
                if scene.ngeom >= scene.maxgeom:
                    return
                geom = scene.geoms[scene.ngeom]
                mujoco.mjv_initGeom(geom, mujoco.mjtGeom.mjGEOM_LINE, np.zeros(3), np.zeros(3), np.eye(3).ravel(), rgba)
                ends = [np.array([centre[0] + a, centre[1] + b, 1e-4]) for a, b in (start, stop)]
                mujoco.mjv_connector(geom, mujoco.mjtGeom.mjGEOM_LINE, 1.0, ends[0], ends[1])
                scene.ngeom += 1

    def _add_keypoints(self, keypoints):
        scene = self.scene
        radius = 0.025 * self.size
        rgba = np.asarray(KEYPOINT_RGBA, dtype=np.float32)
        observed = np.all(np.isfinite(keypoints), axis=1)
        identity = np.eye(3).ravel()
        for point in keypoints[observed]:
            if scene.ngeom >= scene.maxgeom:
                return
            geom = scene.geoms[scene.ngeom]
            mujoco.mjv_initGeom(geom, mujoco.mjtGeom.mjGEOM_SPHERE, np.array([radius, 0, 0]), point, identity, rgba)
            geom.emission = 0.6  # stays magenta under any lighting
            scene.ngeom += 1
        for a, b in self.track.edges if self.track.edges is not None else ():
            if not (observed[a] and observed[b]) or scene.ngeom >= scene.maxgeom:
                continue
            geom = scene.geoms[scene.ngeom]
            mujoco.mjv_initGeom(geom, mujoco.mjtGeom.mjGEOM_CAPSULE, np.zeros(3), np.zeros(3), identity, rgba)
            mujoco.mjv_connector(geom, mujoco.mjtGeom.mjGEOM_CAPSULE, 0.3 * radius, keypoints[a], keypoints[b])
            geom.emission = 0.6
            scene.ngeom += 1

    def close(self):
        self.context.free()


def render_frames(tracks, frames, width, height):
    """Pictures (height, width, 3) uint8 of output ``frames``, one per frame, tracks side by side.

    A generator: frames are rendered (and their rows read) as they are consumed.
    """
    frames = np.asarray(frames)
    widths = [width // len(tracks) + (1 if i < width % len(tracks) else 0) for i in range(len(tracks))]
    context = _gl_context(max(widths), height)
    viewports = []
    try:
        viewports = [_Viewport(track, w, height) for track, w in zip(tracks, widths)]
        for start in range(0, len(frames), CHUNK_FRAMES):
            chunk = frames[start : start + CHUNK_FRAMES]
            states = [viewport.track.read(chunk) for viewport in viewports]
            for i, frame in enumerate(chunk):
                pictures = []
                for viewport, (qpos, keypoints) in zip(viewports, states):
                    track = viewport.track
                    row = int(track.row_of([frame])[0])
                    text = (track.label, f"frame {row}  t = {track.times[row]:.2f} s")
                    pictures.append(viewport.render(qpos[i], None if keypoints is None else keypoints[i], text))
                yield np.concatenate(pictures, axis=1) if len(pictures) > 1 else pictures[0].copy()
    finally:
        for viewport in viewports:
            viewport.close()
        context.free()


# --------------------------------------------------------------------------------------------
# Reading the session


def _pick(nwbfile, kind, name, path, hint):
    """The result of type ``kind`` named ``name``, or the only one (several: an error naming them)."""
    if not find_results(nwbfile, kind, RESULTS_MODULE):
        raise InputError(f"{path}: no {kind.__name__} in processing/{RESULTS_MODULE}; {hint}")
    return find_result(nwbfile, kind, name, RESULTS_MODULE, path=path)


def _times(series):
    return np.asarray(series.get_timestamps(), dtype=float)


def _registration_track(registration, path, colour=BODY_RGBA["registration"], label=None):
    where = f"{path}: processing/{RESULTS_MODULE}/{registration.name}"
    model = compile_body_model(registration.body_model, where)
    qpos = registration.qpos.data
    if qpos.shape[1] != model.nq:
        raise InputError(f"{where}: qpos has {qpos.shape[1]} columns but its body model has nq = {model.nq}")
    if qpos.shape[0] == 0:
        raise InputError(f"{where}: qpos has no frames")
    keypoints, scale, edges = None, 1.0, None
    pose = registration.pose_estimation
    if pose is not None:
        names = registration.keypoint_names
        series = pose.pose_estimation_series
        if all(k in series for k in names):
            keypoints = [series[k].data for k in names]
            scale = float(series[names[0]].conversion)
            if pose.skeleton is not None and pose.skeleton.edges is not None:
                nodes = [str(n) for n in pose.skeleton.nodes[:]]
                edges = np.array(
                    [
                        (names.index(nodes[a]), names.index(nodes[b]))
                        for a, b in np.asarray(pose.skeleton.edges[:])
                        if nodes[a] in names and nodes[b] in names
                    ],
                    dtype=int,
                ).reshape(-1, 2)
    transform = np.asarray(registration.world_to_model[:]) if registration.world_to_model is not None else None
    return BodyTrack(
        label=label or f"{registration.name}\nmodel + measured keypoints",
        model=model,
        qpos=qpos,
        times=_times(registration.qpos),
        colour=colour,
        keypoints=keypoints,
        keypoint_scale=scale,
        world_to_model=transform,
        edges=edges,
    )


def session_tracks(nwbfile, path, registration=None, rollout=None):
    """The tracks to draw: ``[registration]``, or ``[rollout, reference]`` when a rollout is named.

    ``registration`` names a StacRegistration (default: the only one; with a rollout: the one it
    imitates); ``rollout`` a SimulationRollout. Raises InputError naming what is missing, or the
    candidates when the session has several registrations and none is named.
    """
    if rollout is None:
        chosen = _pick(nwbfile, StacRegistration, registration, path, "register the body first (mimic-nwb stac)")
        return [_registration_track(chosen, path)]
    simulated = _pick(nwbfile, SimulationRollout, rollout, path, "simulate a rollout first")
    where = f"{path}: processing/{RESULTS_MODULE}/{simulated.name}"
    if simulated.qpos is None:
        raise InputError(f"{where}: the rollout has no qpos to render")
    model = compile_body_model(simulated.body_model, where)
    if simulated.qpos.data.shape[1] != model.nq:
        raise InputError(
            f"{where}: qpos has {simulated.qpos.data.shape[1]} columns but its body model has nq = {model.nq}"
        )
    if simulated.qpos.data.shape[0] == 0:
        raise InputError(f"{where}: qpos has no steps")
    rollout_times = _times(simulated.qpos)
    tracks = [
        BodyTrack(
            f"{simulated.name}\n{simulated.mode} rollout",
            model,
            simulated.qpos.data,
            rollout_times,
            colour=BODY_RGBA["rollout"],
        )
    ]
    reference = simulated.reference
    if registration is not None:
        reference = _pick(nwbfile, StacRegistration, registration, path, "register the body first (mimic-nwb stac)")
    if reference is not None:
        track = _registration_track(reference, path, label=f"{reference.name}\nreference")
        track.rows = nearest_rows(track.times, rollout_times)  # rollout step i shows this reference row
        tracks.append(track)
    return tracks


def nearest_rows(times, at):
    """Index into ``times`` (sorted, s) of the sample nearest each time in ``at``."""
    times, at = np.asarray(times, dtype=float), np.asarray(at, dtype=float)
    if len(times) == 1:
        return np.zeros(len(at), dtype=int)
    index = np.clip(np.searchsorted(times, at), 1, len(times) - 1)
    earlier = at - times[index - 1] <= times[index] - at
    return np.where(earlier, index - 1, index).astype(int)


def parse_frames(text, num_frames, still=False):
    """Frame indices of ``--frames`` ('START:STOP', either may be empty, STOP exclusive; or 'N').

    Default: every frame (a still: the first). A still renders the first frame of the range.
    """
    if text is None:
        frames = np.arange(num_frames)
    else:
        try:
            if ":" in text:
                start_text, stop_text = text.split(":", 1)
                start = int(start_text) if start_text.strip() else 0
                stop = int(stop_text) if stop_text.strip() else num_frames
            else:
                start = int(text)
                stop = start + 1
        except ValueError:
            raise InputError(f"--frames {text!r}: expected START:STOP or one frame number, e.g. 0:100") from None
        if not (0 <= start < stop <= num_frames):
            raise InputError(f"--frames {text!r}: outside the {num_frames} frames (0:{num_frames}) or empty")
        frames = np.arange(start, stop)
    if not len(frames):
        raise InputError("nothing to render: the session's series have no frames")
    return frames[:1] if still else frames


# --------------------------------------------------------------------------------------------
# Writing


def output_kind(out):
    """'png', 'mp4' or 'folder' for an output path; InputError if its folder is missing."""
    out = Path(out)
    suffix = out.suffix.lower()
    if out.is_dir():
        return "folder"
    if suffix in (".png", ".mp4"):
        if not out.parent.is_dir():
            raise InputError(f"--out {out}: folder {out.parent} does not exist")
        return suffix[1:]
    if suffix:
        raise InputError(f"--out {out}: expected a .png still, an .mp4 video or a folder (PNG per frame)")
    if out.exists():
        raise InputError(f"--out {out}: exists and is not a folder")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: folder {out.parent} does not exist")
    return "folder"


@contextlib.contextmanager
def _replacing(out):
    """A temporary path beside ``out`` that becomes ``out`` when the block ends without error."""
    out = Path(out)
    fd, temporary = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=f".tmp{out.suffix}", dir=out.parent)
    os.close(fd)
    temporary = Path(temporary)
    try:
        yield temporary
        os.replace(temporary, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _write_png(path, picture):
    import imageio.v3 as iio

    iio.imwrite(path, picture, extension=".png")


def _progress(total, enabled):
    if not enabled:
        return contextlib.nullcontext(None)
    from tqdm import tqdm

    return tqdm(total=total, desc="render", unit="frame", leave=False)


@dataclass(frozen=True)
class RenderConfig:
    """What to render: ``frames`` (``'START:STOP'`` or ``'N'``: rows of the rollout, else of the
    registration; default all, a still the first), ``width`` x ``height`` pixels of the whole
    picture (16 to ``MAX_SIZE``; side-by-side views share the width), ``fps`` frames per second
    of a video (default: the series' frame rate, real time)."""

    frames: str | None = None
    width: int = 640
    height: int = 480
    fps: float | None = None

    def __post_init__(self):
        for what in ("width", "height"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 16 <= value <= MAX_SIZE:
                raise ValueError(f"{what} {value}: expected 16 to {MAX_SIZE} pixels")
        if self.fps is not None and not (np.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps {self.fps}: expected a positive number")


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render` wrote: ``out`` (a ``kind`` ``'png'`` still, ``'mp4'`` video or
    ``'folder'`` of ``frame_NNNNNN.png``), the ``frames`` rendered (row indices), the picture size
    in pixels, ``fps`` (frames per second of a video) and the ``views`` drawn (one per viewport)."""

    path: Path
    out: Path
    kind: str
    frames: tuple[int, ...]
    width: int
    height: int
    fps: float
    views: tuple[str, ...]

    def summary(self):
        """One line: what was written, how many frames, the size and the views."""
        what = " beside ".join(self.views)
        size = f"{self.width}x{self.height}"
        if self.kind == "png":
            return f"wrote {self.out}: frame {self.frames[0]}, {size} ({what})"
        if self.kind == "mp4":
            return f"wrote {self.out}: {len(self.frames)} frames {size} at {self.fps:g} fps ({what})"
        return f"wrote {self.out}/: {len(self.frames)} PNG frames {size} ({what})"


def render(session, out, config: RenderConfig | None = None, *, registration=None, rollout=None, progress=False):
    """Render a session to ``out`` (``.png`` still, ``.mp4`` video, or a folder of PNGs).

    ``session`` is a :class:`~mimic_nwb.session.Session` (any mode) or a session path; nothing is
    written to it. ``registration`` names the StacRegistration to show (default: the only one;
    with ``rollout``: the rollout's reference), ``rollout`` a SimulationRollout to show beside
    its reference. ``config`` says which frames and how large (:class:`RenderConfig`). Returns a
    :class:`RenderResult`.
    """
    config = config or RenderConfig()
    width, height = config.width, config.height
    kind = output_kind(out)
    if kind == "mp4" and (width % 2 or height % 2):
        raise InputError(f"width {width}, height {height}: an MP4 (H.264, yuv420p) needs even sizes")
    with opened(session, "r") as session:
        tracks = session_tracks(session.nwbfile, session.path, registration=registration, rollout=rollout)
        main = tracks[0]
        selected = parse_frames(config.frames, len(main.times), still=kind == "png")
        fps = config.fps
        if fps is None:
            steps = np.diff(main.times)
            fps = float(1 / np.median(steps)) if len(steps) and np.median(steps) > 0 else 30.0
        views = tuple(track.label.replace("\n", ": ") for track in tracks)
        with contextlib.closing(render_frames(tracks, selected, width, height)) as pictures:
            if kind == "png":
                with _replacing(out) as temporary:
                    _write_png(temporary, next(pictures))
            else:
                with _progress(len(selected), progress) as bar:
                    if kind == "mp4":
                        _write_video(out, pictures, fps, bar)
                    else:
                        _write_folder(out, zip(selected, pictures), bar)
        path = session.path
    return RenderResult(
        path=path,
        out=Path(out),
        kind=kind,
        frames=tuple(int(f) for f in selected),
        width=width,
        height=height,
        fps=float(fps),
        views=views,
    )


def _write_video(out, pictures, fps, bar=None):
    """H.264 MP4 from pictures, streamed to ffmpeg one at a time."""
    import imageio.v2 as imageio

    with _replacing(out) as temporary:
        writer = imageio.get_writer(
            temporary,
            format="FFMPEG",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,
            quality=8,
            output_params=["-movflags", "+faststart"],
        )
        try:
            for picture in pictures:
                writer.append_data(picture)
                if bar is not None:
                    bar.update()
        finally:
            writer.close()


def _write_folder(out, numbered_pictures, bar=None):
    """One ``frame_NNNNNN.png`` per picture (numbered by frame) in folder ``out``, created if missing."""
    out = Path(out)
    out.mkdir(exist_ok=True)
    for frame, picture in numbered_pictures:
        with _replacing(out / f"frame_{frame:06d}.png") as temporary:
            _write_png(temporary, picture)
        if bar is not None:
            bar.update()
