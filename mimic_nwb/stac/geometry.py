"""Geometry shared by the STAC solver and its checks: rigid fits and geoms against the floor.

The floor is the plane z = 0 of the model's world (``arena`` moves the keypoints there).
"""

from __future__ import annotations

import mujoco
import numpy as np


def kabsch(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rigid transform (R, t) minimising ``sum |R @ source_i + t - target_i|^2`` (N >= 3 points)."""
    cs, ct = source.mean(0), target.mean(0)
    h = (source - cs).T @ (target - ct)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return r, ct - r @ cs


def floor_contact_geoms(model: mujoco.MjModel) -> np.ndarray:
    """Geoms that can touch the floor: (G,) geom ids, in id order.

    The floor is the model's plane geoms on the world body; a geom can touch it when MuJoCo's
    contact filter lets them collide (``contype``/``conaffinity`` bits). Without a floor plane
    every geom of a moving body that takes part in collisions at all counts. Planes never count.
    """
    t = mujoco.mjtGeom
    moving = (model.geom_bodyid > 0) & (model.geom_type != t.mjGEOM_PLANE)
    floors = np.flatnonzero((model.geom_bodyid == 0) & (model.geom_type == t.mjGEOM_PLANE))
    ct, ca = model.geom_contype, model.geom_conaffinity
    if len(floors) == 0:
        return np.flatnonzero(moving & ((ct | ca) != 0))
    touches = np.zeros(model.ngeom, dtype=bool)
    for f in floors:
        touches |= ((ct & ca[f]) != 0) | ((ct[f] & ca) != 0)
    return np.flatnonzero(moving & touches)


class GeomSupport:
    """Lowest points of a set of geoms (their support points along -z), for many geoms at once.

    For spheres, capsules, cylinders, ellipsoids and boxes the point is exact; other geoms
    (meshes, height fields) use their axis-aligned bounding box in the geom frame. Every kind is
    one formula in the geom frame, with ``n`` the world's +z seen from the geom::

        lowest point = C - A^2 n / sqrt(sum A^2 n^2) - B sign(n) - r n

    (sphere: r; capsule: B = (0, 0, half length), r; box: B = half sizes; ellipsoid: A = radii;
    cylinder: A = (r, r, 0), B = (0, 0, half length); bounding box: C = its centre, B = its
    half sizes), so its height is ``z + C.n - sqrt(sum A^2 n^2) - B.|n| - r``. The point is fixed
    on its body, so the gradient of its height over the joints is the z row of the translational
    Jacobian at it (``mj_jac``): the support point slides along the surface, which changes the
    lowest height only to second order.

    Args:
        model: the compiled model.
        geoms: (G,) geom ids.
    """

    def __init__(self, model: mujoco.MjModel, geoms):
        self.geoms = np.asarray(geoms, dtype=int)
        self.bodies = model.geom_bodyid[self.geoms].copy()
        t = mujoco.mjtGeom
        g = len(self.geoms)
        a, b, c, r = np.zeros((g, 3)), np.zeros((g, 3)), np.zeros((g, 3)), np.zeros(g)
        for i, geom in enumerate(self.geoms):
            kind, size = model.geom_type[geom], model.geom_size[geom]
            if kind == t.mjGEOM_SPHERE:
                r[i] = size[0]
            elif kind == t.mjGEOM_CAPSULE:
                b[i, 2], r[i] = size[1], size[0]
            elif kind == t.mjGEOM_CYLINDER:
                a[i, :2], b[i, 2] = size[0], size[1]
            elif kind == t.mjGEOM_ELLIPSOID:
                a[i] = size
            elif kind == t.mjGEOM_BOX:
                b[i] = size
            else:
                c[i], b[i] = model.geom_aabb[geom, :3], model.geom_aabb[geom, 3:]
        self._a2, self._b, self._c, self._r = a**2, b, c, r
        # Spheres and capsules only (a rodent's tail, most limbs): the height needs only the
        # z of the geom's axis, a third of the work.
        self._round = not (a.any() or c.any() or b[:, :2].any())
        self._half = b[:, 2].copy()

    def heights(self, data: mujoco.MjData) -> np.ndarray:
        """(G,) height of each geom's lowest point above the floor (z = 0), metres (after
        ``mj_kinematics``)."""
        if self._round:
            return data.geom_xpos[self.geoms, 2] - self._half * np.abs(data.geom_xmat[self.geoms, 8]) - self._r
        n = data.geom_xmat[self.geoms][:, 6:9]  # world +z in each geom's frame
        return (
            data.geom_xpos[self.geoms, 2]
            + (self._c * n).sum(1)
            - np.sqrt((self._a2 * n * n).sum(1))
            - (self._b * np.abs(n)).sum(1)
            - self._r
        )

    def lowest_points(self, data: mujoco.MjData, which=None) -> np.ndarray:
        """(G, 3) world position of each geom's lowest point, metres (after ``mj_kinematics``);
        ``which`` selects some of the geoms (indices into ``geoms``)."""
        which = np.arange(len(self.geoms)) if which is None else np.asarray(which, dtype=int)
        g = self.geoms[which]
        rot = data.geom_xmat[g].reshape(-1, 3, 3)
        n = rot[:, 2, :]
        a2n = self._a2[which] * n
        norm = np.sqrt((a2n * n).sum(1, keepdims=True))
        local = (
            self._c[which]
            - np.divide(a2n, norm, out=np.zeros_like(a2n), where=norm > 0)
            - self._b[which] * np.where(n >= 0, 1.0, -1.0)
            - self._r[which, None] * n
        )
        return data.geom_xpos[g] + np.einsum("gij,gj->gi", rot, local)


def body_penetration(model: mujoco.MjModel, qpos: np.ndarray, geoms=None) -> tuple[np.ndarray, np.ndarray]:
    """Depth below the floor (z = 0) of each body's deepest geom, frame by frame.

    Args:
        model: the compiled model.
        qpos: (T, nq) poses (rows with NaN give NaN).
        geoms: geoms to check (default: every geom that can touch the floor).

    Returns:
        (bodies (B,) body ids that own a checked geom, depth (T, B) metres, >= 0, 0 when clear).
    """
    geoms = floor_contact_geoms(model) if geoms is None else np.asarray(geoms, dtype=int)
    support = GeomSupport(model, geoms)
    bodies, column = np.unique(support.bodies, return_inverse=True)
    data = mujoco.MjData(model)
    qpos = np.atleast_2d(np.asarray(qpos, dtype=float))
    depth = np.full((len(qpos), len(bodies)), np.nan)
    for t, q in enumerate(qpos):
        if not np.all(np.isfinite(q)):
            continue
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        d = np.maximum(0.0, -support.heights(data))
        row = np.zeros(len(bodies))
        np.maximum.at(row, column, d)
        depth[t] = row
    return bodies, depth


def self_contact_depth(model: mujoco.MjModel, qpos: np.ndarray) -> np.ndarray:
    """(T,) depth of the deepest contact between two of the body's own geoms (MuJoCo's contact
    filter applies; contacts with world geoms such as the floor left out), metres, >= 0; NaN
    for rows of ``qpos`` (T, nq) with NaN."""
    data = mujoco.MjData(model)
    qpos = np.atleast_2d(np.asarray(qpos, dtype=float))
    out = np.full(len(qpos), np.nan)
    for t, q in enumerate(qpos):
        if not np.all(np.isfinite(q)):
            continue
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_collision(model, data)
        n = data.ncon
        geom = data.contact.geom[:n]
        own = (model.geom_bodyid[geom[:, 0]] > 0) & (model.geom_bodyid[geom[:, 1]] > 0)
        out[t] = max(0.0, -float(data.contact.dist[:n][own].min())) if own.any() else 0.0
    return out
