"""The MuJoCo body model: an MJCF built through ``mujoco.MjSpec``, scaled, with keypoint sites.

Shared by STAC (registration) and simulation. The default is the rodent of the ``dm_control``
package (``dm_control/locomotion/walkers/assets/rodent.xml``); any MJCF plus a site map works.

What the builder does, in order (never by editing XML strings):

1. load the MJCF into an ``MjSpec``; every file it reads (mesh, texture, height field, skin;
   resolved as MuJoCo resolves them: relative to the MJCF's folder and its compiler
   ``meshdir``/``texturedir``/``assetdir``) is read into ``BodyModel.assets`` under a plain file
   name, and the MJCF is rewritten to use those names, so that the text plus the assets compile
   anywhere (``mujoco.MjModel.from_xml_string(xml, assets)``, as a reader of the file does).
   Skins are visual only: dropped unless ``skins=True`` (then scaled with the model);
2. add a free joint named ``root`` to the first body of the world if that body has no joint
   (the rodent then has ``nq = 74``: 7 root numbers + 67 hinges);
3. add one sphere site per keypoint, named ``keypoint_<name>``, on the body the site map names,
   at the site map's offset (offsets are given for the *unscaled* model, as in STAC);
4. scale everything geometric by ``scale`` (body, joint, geom, site, camera, light positions,
   geom and site sizes, ``fromto``, mesh scales, height-field sizes, skins, explicit
   inertials): masses follow from the unchanged densities (x scale^3);
5. set the actuators (see below) and add a floor plane at z = 0 (gravity is along -z), unless
   the model has its own ground: a horizontal plane (any name) or a height field on the world
   body, which is kept (a ground plane must then lie at z = 0).

A model MuJoCo refuses is reported in one line naming the MJCF (``MjcfError``); a moving body
without mass (e.g. its mass came from a mesh that was removed) is named.

Actuators. ``rodent.xml`` declares 38 ``general`` actuators, 30 on joints and 8 on the fixed
tendons that couple the spine and tail joints (lumbar and cervical extend/bend/twist, caudal
extend/bend). As declared they are *position servos in normalised control space*:
``ctrlrange`` [-1, 1], ``dyntype="filter"`` with ``dynprm=0.04`` (a first-order activation
filter, time constant 40 ms), ``biastype="affine"`` (force = gain * act + b0 + b1 * length: a
spring toward a target inside the joint range) and ``forcelimited="false"`` (``forcerange`` is
declared but not enforced). ``actuators="torque"`` (the default) does what dm_control's
``Rat(torque_actuators=True)`` does: ``gainprm[0] = forcerange[1]`` and no bias, so
force = forcerange[1] * act, with the activation ``act`` still filtered from the control
(controls are *not* forces: they reach the joints through the 40 ms filter) and the control
range, force range and ``forcelimited`` kept as declared. ``actuators="as_declared"`` keeps
the MJCF's actuators unchanged. ``actuators="auto"`` (the default) is ``"torque"`` when every
actuator declares a positive force range (the rodent) and ``"as_declared"`` otherwise (e.g.
dm_control's dog, whose actuators have gains and no force range).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import mujoco
import numpy as np

from .errors import InputError

__all__ = [
    "KEYPOINT_SITE_PREFIX",
    "BodyModel",
    "MjcfError",
    "SiteMap",
    "build_body_model",
    "default_mjcf_path",
    "load_site_map",
    "set_site_offsets",
]

KEYPOINT_SITE_PREFIX = "keypoint_"
ACTUATOR_KINDS = ("torque", "as_declared")
_KEYPOINT_SITE_SIZE = 0.005  # m (unscaled), drawing only
# Names of the BodyModel group's own datasets: an asset may not take one of them.
_RESERVED_ASSET_NAMES = {"mjcf", "qpos_names", "qvel_names", "actuator_names", "body_names"}
# A world-body plane whose normal is within ~8 degrees of +z is a floor.
_GROUND_NORMAL_Z = 0.99


class MjcfError(InputError, ValueError):
    """An MJCF that cannot be used as a body model: one line naming the file and the problem.

    Also a ValueError, like the builder's other errors for bad input."""


def default_mjcf_path() -> Path:
    """Path of the rodent MJCF shipped inside the installed ``dm_control`` package."""
    import dm_control  # imported here: only the default needs it

    return Path(dm_control.__file__).parent / "locomotion" / "walkers" / "assets" / "rodent.xml"


# --------------------------------------------------------------------------------------------
# Site map
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteMap:
    """Where each keypoint sits on the body model.

    Attributes:
        sites: keypoint name -> (body name, offset (3,) in metres in the body's frame, for the
            unscaled model).
        root_keypoint: keypoint that seeds the root position (e.g. ``SpineL``).
        trunk_keypoints: keypoints on the trunk, used to initialise the root pose.
        regularized_keypoints: keypoints whose offsets are pulled toward their initial values.
        scale: the model scale factor for this kind of animal (1.0 when not given).
        skeleton: name of the keypoint skeleton (e.g. ``rat23``), informational.
    """

    sites: Mapping[str, tuple[str, tuple[float, float, float]]]
    root_keypoint: str | None = None
    trunk_keypoints: tuple[str, ...] = ()
    regularized_keypoints: tuple[str, ...] = ()
    scale: float = 1.0
    skeleton: str | None = None

    def __post_init__(self):
        if not self.sites:
            raise ValueError("site map: no sites")
        for name, entry in self.sites.items():
            if len(entry) != 2 or not isinstance(entry[0], str) or len(entry[1]) != 3:
                raise ValueError(f"site map: keypoint {name!r} must be [body, x, y, z], got {entry!r}")
            if not np.all(np.isfinite(np.asarray(entry[1], dtype=float))):
                raise ValueError(f"site map: keypoint {name!r} has a non-finite offset {entry[1]!r}")
        named = [self.root_keypoint] if self.root_keypoint else []
        for role, names in (
            ("root_keypoint", named),
            ("trunk_keypoints", self.trunk_keypoints),
            ("regularized_keypoints", self.regularized_keypoints),
        ):
            for n in names:
                if n not in self.sites:
                    raise ValueError(f"site map: {role} names {n!r}, which has no site")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"site map: model_scale_factor must be > 0, got {self.scale!r}")

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        return tuple(self.sites)


def load_site_map(source: str | os.PathLike | Mapping) -> SiteMap:
    """Read a site map from a YAML file (or an already parsed mapping).

    The format is that of ``mimic_nwb/data/rat23_rodent_sites.yaml``::

        model_scale_factor: 0.9
        root_keypoint: SpineL
        trunk_keypoints: [SpineF, SpineL, ...]
        regularized_keypoints: [HandL, ...]
        sites:
          Snout: [skull, 0.0, 0.0, 0.0]      # body, x, y, z (metres, body frame, unscaled)
    """
    if isinstance(source, Mapping):
        raw, where = dict(source), "site map"
    else:
        import yaml

        with open(source) as f:
            raw = yaml.safe_load(f)
        where = str(source)
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: not a YAML mapping")
    if "sites" not in raw or not isinstance(raw["sites"], Mapping):
        raise ValueError(f"{where}: needs a 'sites' mapping of keypoint -> [body, x, y, z]")
    sites = {}
    for name, entry in raw["sites"].items():
        if not (isinstance(entry, Sequence) and len(entry) == 4 and isinstance(entry[0], str)):
            raise ValueError(f"{where}: site {name!r} must be [body, x, y, z], got {entry!r}")
        try:
            offset = tuple(float(v) for v in entry[1:])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: site {name!r} has a non-numeric offset {entry[1:]!r}") from None
        sites[str(name)] = (entry[0], offset)
    try:
        return SiteMap(
            sites=sites,
            root_keypoint=raw.get("root_keypoint"),
            trunk_keypoints=tuple(raw.get("trunk_keypoints") or ()),
            regularized_keypoints=tuple(raw.get("regularized_keypoints") or ()),
            scale=float(raw.get("model_scale_factor", 1.0)),
            skeleton=raw.get("skeleton"),
        )
    except ValueError as err:
        raise ValueError(f"{where}: {str(err).removeprefix('site map: ')}") from None


# --------------------------------------------------------------------------------------------
# Site offsets on a compiled model
# --------------------------------------------------------------------------------------------


def set_site_offsets(model: mujoco.MjModel, site_ids: Sequence[int], offsets: np.ndarray) -> None:
    """Write site positions (body frame, metres) into a compiled model, in place.

    MuJoCo marks a site compiled with zero offset and identity orientation as
    ``site_sameframe = mjSAMEFRAME_BODY`` and then copies the body pose in ``mj_kinematics``,
    ignoring ``site_pos``: writing ``model.site_pos`` alone would silently change nothing.
    This function also clears that flag for the sites it moves (``mjSAMEFRAME_NONE`` is always
    correct, only marginally slower).

    Args:
        model: the compiled model, modified in place.
        site_ids: (K,) site ids.
        offsets: (K, 3) positions in the frame of each site's body, metres.
    """
    site_ids = np.asarray(site_ids, dtype=int)
    offsets = np.asarray(offsets, dtype=float)
    if offsets.shape != (len(site_ids), 3):
        raise ValueError(f"offsets: expected shape ({len(site_ids)}, 3), got {offsets.shape}")
    model.site_pos[site_ids] = offsets
    model.site_sameframe[site_ids] = mujoco.mjtSameFrame.mjSAMEFRAME_NONE


# --------------------------------------------------------------------------------------------
# The body model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BodyModel:
    """A compiled body model and everything needed to describe it in a file.

    Attributes:
        model: the compiled ``mujoco.MjModel`` (compiled from ``xml`` and ``assets``).
        xml: the exact MJCF text of the scaled model; compiles with ``assets`` alone
            (``mujoco.MjModel.from_xml_string(xml, assets)``). ``model`` is compiled from this
            text, so it carries the XML writer's precision (6 significant digits) like any
            reader of the stored text.
        model_name: MJCF model name (``rat`` for the rodent).
        scale: the scale factor applied to the source MJCF.
        actuator_kind: ``"torque"`` or ``"as_declared"`` (see the module docstring).
        timestep: simulation timestep, seconds.
        qpos_names, qpos_units: (nq,) one name and unit per qpos column.
        qvel_names, qvel_units: (nv,) one name and unit per qvel column.
        actuator_names: (nu,), body_names: (nbody,) (``world`` first).
        keypoint_names: (K,) keypoints in the order of the keypoint sites.
        keypoint_bodies: (K,) body name of each keypoint site.
        keypoint_site_ids: (K,) site ids; keypoint_body_ids: (K,) body ids.
        initial_offsets: (K, 3) keypoint site offsets as compiled (scaled), metres, body frame.
        site_map: the site map the keypoint sites came from.
        xml_sha256: sha256 of ``xml`` (hex); mujoco_version: MuJoCo that compiled it.
        source: path of the MJCF the model was built from.
        assets: file name -> bytes of every file the MJCF reads (meshes, textures, height
            fields, skins), names as written in ``xml``; empty for the rodent (read-only).
    """

    model: mujoco.MjModel
    xml: str
    model_name: str
    scale: float
    actuator_kind: str
    timestep: float
    qpos_names: tuple[str, ...]
    qpos_units: tuple[str, ...]
    qvel_names: tuple[str, ...]
    qvel_units: tuple[str, ...]
    actuator_names: tuple[str, ...]
    body_names: tuple[str, ...]
    keypoint_names: tuple[str, ...]
    keypoint_bodies: tuple[str, ...]
    keypoint_site_ids: np.ndarray
    keypoint_body_ids: np.ndarray
    initial_offsets: np.ndarray
    site_map: SiteMap
    xml_sha256: str
    mujoco_version: str
    source: str = field(default="")
    assets: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def nq(self) -> int:
        return self.model.nq

    @property
    def nv(self) -> int:
        return self.model.nv

    def with_site_offsets(self, offsets: np.ndarray) -> BodyModel:
        """A new BodyModel whose keypoint sites sit at ``offsets`` ((K, 3), metres, body frame,
        *scaled* model, e.g. STAC's fitted offsets); recompiled, so the XML carries them."""
        offsets = np.asarray(offsets, dtype=float)
        if offsets.shape != (len(self.keypoint_names), 3) or not np.all(np.isfinite(offsets)):
            raise ValueError(
                f"offsets: expected finite values of shape ({len(self.keypoint_names)}, 3), got {offsets.shape}"
            )
        spec = mujoco.MjSpec.from_string(self.xml, assets=dict(self.assets))
        for name, off in zip(self.keypoint_names, offsets):
            spec.site(KEYPOINT_SITE_PREFIX + name).pos = off
        return _finish(
            spec, self.scale, self.actuator_kind, self.keypoint_names, self.site_map, self.source, self.assets
        )


def as_mjmodel(body_model: BodyModel | mujoco.MjModel) -> mujoco.MjModel:
    """The compiled model of a BodyModel (or the MjModel itself)."""
    if isinstance(body_model, BodyModel):
        return body_model.model
    if isinstance(body_model, mujoco.MjModel):
        return body_model
    raise ValueError(f"body_model: expected a BodyModel or mujoco.MjModel, got {type(body_model).__name__}")


def build_body_model(
    site_map: SiteMap | str | os.PathLike | Mapping | None = None,
    keypoint_names: Sequence[str] | None = None,
    *,
    mjcf: str | os.PathLike | None = None,
    scale: float | None = None,
    actuators: str = "auto",
    floor: bool = True,
    skins: bool = False,
) -> BodyModel:
    """Build the body model.

    Args:
        site_map: a SiteMap, a path to its YAML, or a parsed mapping; ``None`` adds no keypoint
            sites.
        keypoint_names: the keypoints to place, in this order (e.g. the order of the data);
            default: every keypoint of the site map. A name missing from the site map is an error.
        mjcf: path of the MJCF file; default: the dm_control rodent. The files it reads
            (meshes, textures, height fields, skins) are stored in ``BodyModel.assets``.
        scale: geometric scale factor; default: the site map's ``model_scale_factor`` (1.0 without
            a site map).
        actuators: ``"torque"`` (gain = force range, activation filter kept), ``"as_declared"``,
            or ``"auto"``: torque when every actuator declares a positive force range, else as
            declared.
        floor: add a floor plane named ``floor`` (``floor_1``... when taken) at z = 0, unless the
            model has its own ground (a horizontal plane or a height field on the world body).
        skins: keep the MJCF's skins (visual only; their vertices scaled with the model) and
            store their files; by default they are dropped.

    Returns:
        a BodyModel. Raises ValueError with one line naming the problem for a bad site map, and
        MjcfError (an InputError and ValueError) for an MJCF that cannot be used: a missing
        asset file, a model MuJoCo refuses (a moving body without mass is named), a ground plane
        away from z = 0.
    """
    if actuators not in (*ACTUATOR_KINDS, "auto"):
        raise ValueError(f"actuators: expected one of {(*ACTUATOR_KINDS, 'auto')}, got {actuators!r}")
    if site_map is not None and not isinstance(site_map, SiteMap):
        site_map = load_site_map(site_map)
    if scale is None:
        scale = site_map.scale if site_map is not None else 1.0
    scale = float(scale)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale: must be > 0, got {scale!r}")
    if keypoint_names is None:
        keypoint_names = site_map.keypoint_names if site_map is not None else ()
    keypoint_names = tuple(keypoint_names)
    if len(set(keypoint_names)) != len(keypoint_names):
        raise ValueError(f"keypoint_names: duplicated names in {keypoint_names}")
    if keypoint_names and site_map is None:
        raise ValueError("keypoint_names given without a site map")
    for name in keypoint_names:
        if name not in site_map.sites:
            raise ValueError(f"keypoint {name!r} is not in the site map")

    mjcf = Path(mjcf) if mjcf is not None else default_mjcf_path()
    if not mjcf.exists():
        raise ValueError(f"mjcf: {mjcf}: no such file")
    try:
        spec = mujoco.MjSpec.from_file(str(mjcf))
    except ValueError as err:  # XML MuJoCo cannot parse (its message spans lines)
        raise MjcfError(f"mjcf: {mjcf}: {_one_line(err)}") from None

    assets = _read_file_assets(spec, mjcf, skins)
    _add_root_joint(spec)

    body_names = {b.name for b in spec.bodies}
    for name in keypoint_names:
        body, offset = site_map.sites[name]
        if body not in body_names:
            raise ValueError(
                f"site map: keypoint {name!r} is on body {body!r}, which model "
                f"{spec.modelname!r} ({mjcf.name}) does not have"
            )
        if spec.site(KEYPOINT_SITE_PREFIX + name) is not None:
            raise ValueError(f"model already has a site named {KEYPOINT_SITE_PREFIX + name!r}")
        spec.body(body).add_site(
            name=KEYPOINT_SITE_PREFIX + name,
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[_KEYPOINT_SITE_SIZE] * 3,
            rgba=[0, 0, 0, 0.8],
            pos=np.asarray(offset, dtype=float),
            group=3,
        )

    if scale != 1.0:
        _scale_spec(spec, scale)
        assets = _scale_skin_files(spec, assets, scale)
    if actuators == "auto":
        declared = [float(a.forcerange[1]) > 0 for a in spec.actuators]
        actuators = "torque" if declared and all(declared) else "as_declared"
    if actuators == "torque":
        _set_torque_actuators(spec)
    if floor and not _has_ground(spec, mjcf):
        taken = {g.name for g in spec.geoms}
        name = next(n for n in ("floor", *(f"floor_{i}" for i in range(1, len(taken) + 2))) if n not in taken)
        spec.worldbody.add_geom(
            name=name,
            type=mujoco.mjtGeom.mjGEOM_PLANE,
            size=[0, 0, 0.05],
            rgba=[0.5, 0.5, 0.5, 1],
        )
    return _finish(spec, scale, actuators, keypoint_names, site_map, str(mjcf), assets)


# --------------------------------------------------------------------------------------------
# Builder steps
# --------------------------------------------------------------------------------------------


def _read_file_assets(spec: mujoco.MjSpec, mjcf: Path, skins: bool) -> dict[str, bytes]:
    """Read every file the spec references and point the spec at plain names instead.

    Paths resolve as MuJoCo resolves them: an absolute path as it is, a relative one inside the
    element's ``meshdir`` (meshes, height fields, skins) or ``texturedir`` (textures), itself
    relative to the MJCF's folder unless absolute. The returned names are unique file names
    (a suffix is added where two different files share one) and valid HDF5 dataset names."""
    if not skins:
        for skin in list(spec.skins):
            spec.delete(skin)
    model_dir = Path(spec.modelfiledir or mjcf.parent)
    # (element, kind, attribute, index in a list attribute or None, path as written, directory)
    references = []
    for kind, elements, directory in (
        ("mesh", spec.meshes, "meshdir"),
        ("height field", spec.hfields, "meshdir"),
        ("skin", spec.skins, "meshdir"),
        ("texture", spec.textures, "texturedir"),
    ):
        for element in elements:
            folder = getattr(element.compiler, directory) or ""
            if element.file:
                references.append((element, kind, "file", None, element.file, folder))
            for i, cube_file in enumerate(getattr(element, "cubefiles", None) or ()):
                if cube_file:
                    references.append((element, kind, "cubefiles", i, cube_file, folder))

    assets: dict[str, bytes] = {}
    by_path: dict[Path, str] = {}
    renamed = []
    for element, kind, attribute, index, written, folder in references:
        name = written
        if spec.strippath:
            name = Path(written.replace("\\", "/")).name
        path = Path(name)
        if not path.is_absolute():
            path = Path(folder) / path
            if not path.is_absolute():
                path = model_dir / path
        path = path.resolve()
        if path not in by_path:
            try:
                data = path.read_bytes()
            except OSError as err:
                raise MjcfError(
                    f"mjcf: {mjcf.name} reads {kind} {element.name!r} from {written!r}: "
                    f"cannot read {path} ({err.strerror or err})"
                ) from None
            by_path[path] = _unique_asset_name(path.name, assets)
            assets[by_path[path]] = data
        renamed.append((element, attribute, index, by_path[path]))
    # Rewritten only now: elements share their compiler settings (meshdir), cleared below.
    for element, attribute, index, name in renamed:
        if index is None:
            setattr(element, attribute, name)
        else:
            files = list(element.cubefiles)
            files[index] = name
            element.cubefiles = files
    for element in (*spec.meshes, *spec.hfields, *spec.skins, *spec.textures):
        element.compiler.meshdir = ""
        element.compiler.texturedir = ""
    spec.meshdir = ""
    spec.texturedir = ""
    return assets


def _unique_asset_name(file_name: str, taken: Mapping[str, bytes]) -> str:
    stem, suffix = os.path.splitext(file_name)
    # HDF5 names cannot hold "/" and "." alone is the group itself.
    stem = stem.replace("/", "_") or "asset"
    name, n = stem + suffix, 1
    while name in taken or name in _RESERVED_ASSET_NAMES:
        name, n = f"{stem}_{n}{suffix}", n + 1
    return name


def _has_ground(spec: mujoco.MjSpec, mjcf: Path) -> bool:
    """Whether the world body holds a floor: a horizontal plane (normal up) or a height field.

    A ground plane must lie at z = 0, where STAC and the simulation put the floor."""
    ground = False
    for geom in spec.worldbody.geoms:
        if geom.type == mujoco.mjtGeom.mjGEOM_HFIELD:
            ground = True
        elif geom.type == mujoco.mjtGeom.mjGEOM_PLANE:
            pos, quat = _world_pose(spec, geom)
            normal = np.zeros(3)
            mujoco.mju_rotVecQuat(normal, np.array([0.0, 0.0, 1.0]), quat)
            if normal[2] >= _GROUND_NORMAL_Z:
                if abs(pos[2]) > 1e-6:
                    raise MjcfError(
                        f"mjcf: {mjcf.name}: ground plane {geom.name or '(unnamed)'!r} lies at "
                        f"z = {pos[2]:.6g} m; the floor must be at z = 0 (move it, or remove it "
                        "and one is added)"
                    )
                ground = True
    return ground


def _world_pose(spec: mujoco.MjSpec, element) -> tuple[np.ndarray, np.ndarray]:
    """Position and orientation (quaternion) in the world of an element of the world body,
    through the frames it sits in."""
    degree, sequence = spec.compiler.degree, spec.compiler.eulerseq
    pos = np.array(element.pos, dtype=float)
    quat = np.array(
        spec.resolve_orientation(degree, sequence, element.alt)
        if element.alt.type != mujoco.mjtOrientation.mjORIENTATION_QUAT
        else element.quat,
        dtype=float,
    )
    quat /= np.linalg.norm(quat)
    frame = element.frame
    while frame is not None:
        fquat = np.array(
            spec.resolve_orientation(degree, sequence, frame.alt)
            if frame.alt.type != mujoco.mjtOrientation.mjORIENTATION_QUAT
            else frame.quat,
            dtype=float,
        )
        fquat /= np.linalg.norm(fquat)
        rotated = np.zeros(3)
        mujoco.mju_rotVecQuat(rotated, pos, fquat)
        pos = np.array(frame.pos, dtype=float) + rotated
        combined = np.zeros(4)
        mujoco.mju_mulQuat(combined, fquat, quat)
        quat = combined
        frame = frame.frame
    return pos, quat


def _add_root_joint(spec: mujoco.MjSpec) -> None:
    root = spec.worldbody.first_body()
    if root is None:
        raise ValueError(f"mjcf: model {spec.modelname!r} has no body")
    joints = list(root.joints)
    if joints:
        if joints[0].type != mujoco.mjtJoint.mjJNT_FREE:
            raise ValueError(f"mjcf: root body {root.name!r} already has joints and no free joint")
        return
    root.add_freejoint(name="root")
    # A keyframe's qpos no longer matches nq once the free joint exists.
    for key in list(spec.keys):
        spec.delete(key)


def _scale_spec(spec: mujoco.MjSpec, s: float) -> None:
    """Scale every position and size in place (like dm_control's ``rescale_subtree``)."""
    for body in spec.bodies[1:]:  # [0] is the world
        body.pos = body.pos * s
        if body.explicitinertial:
            body.ipos = body.ipos * s
            body.mass = body.mass * s**3
            body.inertia = body.inertia * s**5
    for geom in spec.geoms:
        if geom.type == mujoco.mjtGeom.mjGEOM_PLANE:
            continue  # infinite, only its rendering size
        geom.pos = geom.pos * s
        geom.size = geom.size * s
        geom.fromto = geom.fromto * s  # NaN (unset) stays NaN
    for element in (*spec.joints, *spec.cameras, *spec.lights, *spec.frames):
        element.pos = element.pos * s
    for site in spec.sites:
        site.pos = site.pos * s
        site.size = site.size * s
        site.fromto = site.fromto * s
    for mesh in spec.meshes:
        mesh.scale = mesh.scale * s
    for hfield in spec.hfields:
        hfield.size = np.asarray(hfield.size) * s  # x, y radii, elevation, base depth
    for skin in spec.skins:  # skins from files are scaled in _scale_skin_files
        skin.inflate = skin.inflate * s
        if len(skin.vert):
            skin.vert = list(np.asarray(skin.vert) * s)
        if len(skin.bindpos):
            skin.bindpos = list(np.asarray(skin.bindpos) * s)


def _scale_skin_files(spec: mujoco.MjSpec, assets: Mapping[str, bytes], s: float) -> dict[str, bytes]:
    """Scale the vertices and bone bind positions of the skins read from ``.skn`` files.

    MuJoCo's binary skin format: int32 nvert, ntexcoord, nface, nbone; float32 vertices
    (nvert x 3); float32 texcoords (ntexcoord x 2); int32 faces (nface x 3); then per bone:
    char[40] body name, float32 bindpos[3], float32 bindquat[4], int32 count,
    int32 vertex ids[count], float32 weights[count]."""
    assets = dict(assets)
    for skin in spec.skins:
        if not skin.file:
            continue
        raw = bytearray(assets[skin.file])
        nvert, ntex, nface, nbone = struct.unpack_from("<4i", raw, 0)
        at = 16
        verts = np.frombuffer(raw, "<f4", 3 * nvert, at) * np.float32(s)
        raw[at : at + 12 * nvert] = verts.astype("<f4").tobytes()
        at += 12 * nvert + 8 * ntex + 12 * nface
        for _ in range(nbone):
            at += 40
            bind = np.frombuffer(raw, "<f4", 3, at) * np.float32(s)
            raw[at : at + 12] = bind.astype("<f4").tobytes()
            at += 28
            (count,) = struct.unpack_from("<i", raw, at)
            at += 4 + 8 * count
        assets[skin.file] = bytes(raw)
    return assets


def _set_torque_actuators(spec: mujoco.MjSpec) -> None:
    # As dm_control's Rat(torque_actuators=True): force = forcerange[1] * filtered activation.
    for act in spec.actuators:
        fmax = float(act.forcerange[1])
        if not fmax > 0:
            raise ValueError(f"actuator {act.name!r} has no positive forcerange; torque actuators need it")
        gain = np.zeros_like(act.gainprm)
        gain[0] = fmax
        act.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        act.gainprm = gain
        act.biastype = mujoco.mjtBias.mjBIAS_NONE
        act.biasprm = np.zeros_like(act.biasprm)


def column_names(model: mujoco.MjModel) -> tuple[list, list, list, list]:
    """(qpos names, qpos units, qvel names, qvel units) of a model, one per column."""
    qpos_names, qpos_units, qvel_names, qvel_units = [], [], [], []
    for j in range(model.njnt):
        name = model.joint(j).name or f"joint{j}"
        jtype = model.jnt_type[j]
        if jtype == mujoco.mjtJoint.mjJNT_FREE:
            qpos_names += [f"{name}_{c}" for c in ("x", "y", "z", "qw", "qx", "qy", "qz")]
            qpos_units += ["meters"] * 3 + ["dimensionless"] * 4
            qvel_names += [f"{name}_{c}" for c in ("vx", "vy", "vz", "wx", "wy", "wz")]
            qvel_units += ["meters/second"] * 3 + ["radians/second"] * 3
        elif jtype == mujoco.mjtJoint.mjJNT_BALL:
            qpos_names += [f"{name}_{c}" for c in ("qw", "qx", "qy", "qz")]
            qpos_units += ["dimensionless"] * 4
            qvel_names += [f"{name}_{c}" for c in ("wx", "wy", "wz")]
            qvel_units += ["radians/second"] * 3
        elif jtype == mujoco.mjtJoint.mjJNT_SLIDE:
            qpos_names.append(name), qpos_units.append("meters")
            qvel_names.append(name), qvel_units.append("meters/second")
        else:  # hinge
            qpos_names.append(name), qpos_units.append("radians")
            qvel_names.append(name), qvel_units.append("radians/second")
    return qpos_names, qpos_units, qvel_names, qvel_units


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def _compile(spec: mujoco.MjSpec, source: str) -> None:
    """Compile the spec; MuJoCo's refusal becomes one line naming the MJCF (and, for a moving
    body without mass, every such body)."""
    try:
        spec.compile()
    except ValueError as err:
        message = str(err)
        where = Path(source).name or "model"
        if "mass and inertia of moving bodies" in message:
            names = _massless_moving_bodies(spec)
            if not names:
                found = re.search(r"Element name '([^']*)'", message)
                names = [found.group(1)] if found else []
            raise MjcfError(
                f"mjcf: {where}: moving bod{'ies' if len(names) > 1 else 'y'} "
                f"{', '.join(repr(n) for n in names) or '(unnamed)'} without mass (mass and inertia "
                "come from its geoms, or an <inertial>; e.g. a mesh geom was removed)"
            ) from None
        raise MjcfError(f"mjcf: {where} does not compile: {_one_line(err)}") from None


def _massless_moving_bodies(spec: mujoco.MjSpec) -> list[str]:
    """Bodies with degrees of freedom and no mass: a copy compiled with a tiny mass bound."""
    probe = spec.copy()
    probe.compiler.boundmass = 1e-12
    probe.compiler.boundinertia = 1e-12
    try:
        model = probe.compile()
    except ValueError:
        return []
    return [
        model.body(b).name for b in range(1, model.nbody) if model.body_dofnum[b] > 0 and model.body_mass[b] <= 1e-12
    ]


def _finish(spec, scale, actuator_kind, keypoint_names, site_map, source, assets) -> BodyModel:
    assets = MappingProxyType(dict(assets))
    spec.assets = dict(assets)
    _compile(spec, source)
    xml = spec.to_xml()
    # The stored model is the one compiled from the text: what a reader of the file gets.
    model = mujoco.MjModel.from_xml_string(xml, dict(assets))
    site_ids = np.array([model.site(KEYPOINT_SITE_PREFIX + n).id for n in keypoint_names], dtype=int)
    body_ids = model.site_bodyid[site_ids].copy() if len(site_ids) else np.zeros(0, int)
    offsets = model.site_pos[site_ids].copy() if len(site_ids) else np.zeros((0, 3))
    for a in (site_ids, body_ids, offsets):
        a.flags.writeable = False
    qpos_names, qpos_units, qvel_names, qvel_units = column_names(model)
    return BodyModel(
        model=model,
        xml=xml,
        model_name=spec.modelname,
        scale=float(scale),
        actuator_kind=actuator_kind,
        timestep=float(model.opt.timestep),
        qpos_names=tuple(qpos_names),
        qpos_units=tuple(qpos_units),
        qvel_names=tuple(qvel_names),
        qvel_units=tuple(qvel_units),
        actuator_names=tuple(model.actuator(i).name for i in range(model.nu)),
        body_names=tuple(model.body(i).name for i in range(model.nbody)),
        keypoint_names=tuple(keypoint_names),
        keypoint_bodies=tuple(model.body(b).name for b in body_ids),
        keypoint_site_ids=site_ids,
        keypoint_body_ids=body_ids,
        initial_offsets=offsets,
        site_map=site_map,
        xml_sha256=hashlib.sha256(xml.encode()).hexdigest(),
        mujoco_version=mujoco.__version__,
        source=source,
        assets=assets,
    )
