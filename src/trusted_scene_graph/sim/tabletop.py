"""Randomised tabletop scenes in MuJoCo: primitives of named colours on a table, with exact ground truth.

Why this exists: relation and lifting accuracy must be measured on many scenes whose true answer is known, including
the hard cases (stacks for ``on_top_of``, near-ties where ``left_of`` / ``in_front_of`` is ambiguous, occlusion).
A seed and :class:`TabletopSettings` fully determine a scene; the same scenes are later rendered into benchmark bags.

Scene content (all static: geoms are fixed to the world and placed exactly resting, so no physics is stepped):

* A 10 m x 10 m floor (instance id 0, like the background; finite, so depth never reaches the far clipping plane,
  where the image would silently turn to sky) and a table: one box standing on the floor, its top at
  ``table_height_m`` with normal (0, 0, 1), instance id ``N + 1``.
* ``N`` objects with instance ids ``1..N``: a shape (cube, box, cylinder, sphere or capsule, all upright), a named
  colour and a size of ``object_size_range_m`` per dimension. Labels such as "red cube" are unique within a scene,
  so ground truth can be matched by label. Only cubes and boxes are rotated, and only about the world z axis (yaw);
  the other shapes are symmetric about z, so every object's world axis-aligned box (``size_m``) is exact: for a
  yawed box it is the box around the rotated footprint, the same box a world-aligned lifting of its points gives.
* Objects stand on the table, or (``stacks``) one object stands on another's flat top (its bottom equals the
  other's top exactly). Footprints (world axis-aligned, grown by ``min_gap_m``) never overlap, found by rejection
  sampling inside ``placement_area_m``; a stack counts as one footprint.
* ``near_tie``: two objects whose centres differ by less than ``near_tie_tolerance_m`` along the camera's
  horizontal left axis (``"left"``: one behind the other, so left/right is ambiguous) or its horizontal viewing
  direction (``"depth"``: side by side, so front/behind is ambiguous).

Camera and image conventions are those of :mod:`trusted_scene_graph.sim.fetch` (checked by its tests): optical
frame x right, y down, z forward; world z up; pixel centres at integer coordinates; ``depth_m`` is z-depth in metres
and NaN where nothing was drawn (sky).

Heavy imports (mujoco) happen when a :class:`TabletopScene` is constructed; this module never imports rclpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from trusted_scene_graph.geometry.camera import Intrinsics
from trusted_scene_graph.geometry.transform import RigidTransform
from trusted_scene_graph.sim import SimError
from trusted_scene_graph.sim.fetch import (
    CameraModel,
    FreeCameraView,
    camera_from_scene,
    import_mujoco,
    open_renderer,
    read_only,
)

if TYPE_CHECKING:
    import mujoco

#: Named colours (linear RGB in [0, 1]); the name is the first word of an object's label.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.10, 0.10),
    "green": (0.10, 0.65, 0.20),
    "blue": (0.10, 0.25, 0.85),
    "yellow": (0.95, 0.85, 0.10),
    "orange": (1.00, 0.50, 0.05),
    "purple": (0.50, 0.15, 0.70),
    "pink": (1.00, 0.45, 0.70),
    "cyan": (0.10, 0.80, 0.85),
    "white": (0.95, 0.95, 0.95),
    "black": (0.08, 0.08, 0.08),
}

#: Shape names (the second word of a label) and the MuJoCo geom type drawing them. A "box" has unequal sides (the
#: longest at least 1.5 times the shortest) so it is not mistaken for a "cube".
SHAPES: dict[str, str] = {"cube": "box", "box": "box", "cylinder": "cylinder", "sphere": "sphere", "capsule": "capsule"}

#: Shapes with a flat top that another object can stand on.
FLAT_TOPPED_SHAPES = ("cube", "box", "cylinder")

NEAR_TIE_AXES = ("none", "left", "depth")

_TABLE_RGBA = (0.55, 0.42, 0.30, 1.0)
_BOX_ASPECT = 1.5  # longest / shortest side of a "box"
_CAPSULE_ASPECT = 1.5  # height / diameter of a capsule, so it reads as elongated
_STACK_BASE_MIN_M = 0.05  # smallest footprint side of a stack's base, so the top object has room
_STACK_OFFSET = 0.15  # largest offset of a stacked object from its base's centre, as a fraction of the base's side
_MAX_TRIES_PER_ITEM = 300
_MAX_LAYOUT_RESTARTS = 30
_SILHOUETTE_MARGIN_PX = 2  # around projected boxes, for rasterisation at the edges of tessellated curved shapes


@dataclass(frozen=True)
class TabletopSettings:
    """What a random tabletop scene may contain and how it is viewed; ranges are (low, high), both inclusive."""

    num_objects_range: tuple[int, int] = (3, 10)
    object_size_range_m: tuple[float, float] = (0.02, 0.12)  # every object dimension (diameter, side, height)
    camera_distance_range_m: tuple[float, float] = (0.6, 1.5)  # from the table-top centre
    camera_elevation_down_range_deg: tuple[float, float] = (20.0, 70.0)  # angle below the horizontal
    camera_azimuth_range_deg: tuple[float, float] = (0.0, 360.0)  # 0 looks along world +x, 90 along +y
    width: int = 640
    height: int = 480
    fovy_deg: float = 45.0
    stacks: int = 0  # number of objects standing on another object
    near_tie: str = "none"  # "none", "left" or "depth", see the module docstring
    near_tie_tolerance_m: float = 0.01
    rotate_boxes: bool = True  # random yaw for cubes and boxes
    table_size_m: tuple[float, float] = (1.2, 0.8)  # x, y
    table_height_m: float = 0.75
    placement_area_m: tuple[float, float] = (0.6, 0.45)  # x, y, centred on the table; objects stay inside it
    min_gap_m: float = 0.005  # between footprints of objects that do not touch
    shadows: bool = False  # a shadow-casting light makes each RGB render ~10x slower with software EGL

    def __post_init__(self) -> None:
        low_n, high_n = self.num_objects_range
        if not 1 <= low_n <= high_n <= len(COLOURS) * len(SHAPES):
            raise SimError(
                f"num_objects_range={self.num_objects_range} must be 1 <= low <= high <= "
                f"{len(COLOURS) * len(SHAPES)} (labels are unique within a scene)"
            )
        low_m, high_m = self.object_size_range_m
        if not (math.isfinite(high_m) and 0.0 < low_m and high_m >= 2.0 * low_m):
            raise SimError(
                f"object_size_range_m={self.object_size_range_m} must have low > 0 and high >= 2 * low (boxes and "
                "capsules need unequal sides)"
            )
        _check_range("camera_distance_range_m", self.camera_distance_range_m, 0.05, 100.0)
        _check_range("camera_elevation_down_range_deg", self.camera_elevation_down_range_deg, 1.0, 89.0)
        _check_range("camera_azimuth_range_deg", self.camera_azimuth_range_deg, -720.0, 720.0)
        if self.width <= 0 or self.height <= 0:
            raise SimError(f"image size {self.width}x{self.height} is empty")
        if not 1.0 <= self.fovy_deg <= 170.0:
            raise SimError(f"fovy_deg={self.fovy_deg} must be in [1, 170]")
        if self.stacks < 0:
            raise SimError(f"stacks={self.stacks} must be >= 0")
        if self.near_tie not in NEAR_TIE_AXES:
            raise SimError(f"near_tie={self.near_tie!r} is not one of {NEAR_TIE_AXES}")
        if self.required_objects > high_n:
            raise SimError(
                f"stacks={self.stacks} and near_tie={self.near_tie!r} need {self.required_objects} objects but "
                f"num_objects_range={self.num_objects_range} allows at most {high_n}"
            )
        if not 0.0 < self.near_tie_tolerance_m <= 0.1:
            raise SimError(f"near_tie_tolerance_m={self.near_tie_tolerance_m} must be in (0, 0.1]")
        if not (0.0 < self.placement_area_m[0] <= self.table_size_m[0] and
                0.0 < self.placement_area_m[1] <= self.table_size_m[1]):
            raise SimError(f"placement_area_m={self.placement_area_m} must fit on table_size_m={self.table_size_m}")
        if not 0.0 < self.table_height_m <= 3.0:
            raise SimError(f"table_height_m={self.table_height_m} must be in (0, 3]")
        if not 0.0 <= self.min_gap_m <= 0.5:
            raise SimError(f"min_gap_m={self.min_gap_m} must be in [0, 0.5]")

    @property
    def required_objects(self) -> int:
        """Objects the stacks and the near-tie pair need (each stack is two objects, the pair two more)."""
        return 2 * self.stacks + (2 if self.near_tie != "none" else 0)


@dataclass(frozen=True)
class TabletopObject:
    """Ground truth for one object, in the world frame (z up, metres)."""

    instance_id: int  # value of its pixels in TabletopFrame.instances
    label: str  # "<colour> <shape>", unique within the scene
    shape: str  # a key of SHAPES
    colour: str  # a key of COLOURS
    centre_m: np.ndarray  # (3,) centre of the object (and of its world axis-aligned box)
    size_m: np.ndarray  # (3,) full extent of the world axis-aligned box along x, y, z
    yaw_deg: float  # rotation about world z (cubes and boxes only; 0 for the others)
    supported_by: int  # instance id of what it stands on: another object, or the table
    visible_pixels: int  # pixels with this instance id in the frame
    # visible_pixels / pixels of the object rendered alone from the same camera (0 when it is off-image): occlusion
    # by other objects lowers it, cropping at the image border does not.
    visible_fraction: float
    distance_m: float  # from the camera's optical centre to centre_m


@dataclass(frozen=True)
class TabletopFrame:
    """One rendering of a tabletop scene with its ground truth; arrays are read-only."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth_m: np.ndarray  # (H, W) float32 z-depth along the optical axis, NaN where nothing was drawn
    instances: np.ndarray  # (H, W) uint16: objects 1..N, table N + 1, floor and sky 0
    intrinsics: Intrinsics
    camera_to_world: RigidTransform  # optical frame (x right, y down, z forward) -> world (z up)
    objects: tuple[TabletopObject, ...]  # ordered by instance id
    table_top_z_m: float
    table_normal: np.ndarray  # (3,) unit normal of the table top in the world, (0, 0, 1)
    table_instance_id: int
    labels_by_id: dict[int, str]  # every instance id in `instances` except 0, including the table
    near_tie_pair: tuple[int, int] | None  # instance ids of the near-tie pair, None without one
    near_tie_axis: str  # "none", "left" or "depth"


@dataclass
class _Placement:
    """An object of the layout: its shape, colour, extents in its own frame, pose and support."""

    shape: str
    colour: str
    dims_m: np.ndarray  # (3,) full extents along the object's own x, y, z (diameter, diameter, height if round)
    yaw_rad: float = 0.0
    centre_m: np.ndarray = field(default_factory=lambda: np.zeros(3))
    supported_by: int = 0  # index into the layout, or -1 for the table

    @property
    def aabb_size_m(self) -> np.ndarray:
        c, s = abs(math.cos(self.yaw_rad)), abs(math.sin(self.yaw_rad))
        dx, dy, dz = self.dims_m
        return np.array([c * dx + s * dy, s * dx + c * dy, dz])

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class _Layout:
    view: FreeCameraView
    placements: tuple[_Placement, ...]
    near_tie_pair: tuple[int, int] | None  # indices into placements


class TabletopScene:
    """A random tabletop scene built from ``seed`` and ``settings``, rendered by :meth:`render`.

    Construction samples the layout (pure numpy, deterministic for a seed), writes the MJCF (:attr:`mjcf`),
    compiles it and opens a ``mujoco.Renderer`` (MUJOCO_GL=egl by default). :meth:`render` draws RGB, depth and
    segmentation, plus segmentation passes with only some objects shown to measure each object's unoccluded
    silhouette: objects whose projected boxes do not overlap share a pass (10 objects: 3-7 passes, 4 on average).
    At 640x480 on two CPU cores with software EGL, construction takes ~0.11 s and a render of 10 objects ~0.11-0.17 s.
    """

    TABLE_LABEL: ClassVar[str] = "table"

    def __init__(self, seed: int = 0, settings: TabletopSettings | None = None) -> None:
        self._renderer: Any = None  # set first so close() works on a partially built scene
        self.seed = int(seed)
        self.settings = settings if settings is not None else TabletopSettings()
        self._layout = _sample_layout(np.random.default_rng(self.seed), self.settings)
        self.mjcf = _mjcf(self._layout, self.settings)
        self._mujoco = import_mujoco()
        built = False
        try:
            self._build()
            built = True
        finally:
            if not built:
                self.close()

    def _build(self) -> None:
        mj = self._mujoco
        settings = self.settings
        self._model = mj.MjModel.from_xml_string(self.mjcf)
        self._data = mj.MjData(self._model)
        mj.mj_forward(self._model, self._data)  # world geoms get their poses (geom_xpos) from kinematics
        n = len(self._layout.placements)
        self._object_geoms = np.array([self._model.geom(f"object_{i}").id for i in range(1, n + 1)])
        self._table_geom = self._model.geom("table").id
        # Lookup table indexed by (geom id + 1), so the segmentation's -1 (nothing drawn) maps to 0.
        self._geom_to_instance = np.zeros(self._model.ngeom + 1, dtype=np.uint16)
        self._geom_to_instance[self._object_geoms + 1] = np.arange(1, n + 1, dtype=np.uint16)
        self._geom_to_instance[self._table_geom + 1] = n + 1
        self._renderer = open_renderer(mj, self._model, settings.width, settings.height)
        view = self._layout.view
        self._free_camera = mj.MjvCamera()
        self._free_camera.type = mj.mjtCamera.mjCAMERA_FREE
        self._free_camera.lookat[:] = view.lookat_m
        self._free_camera.distance = view.distance_m
        self._free_camera.azimuth = view.azimuth_deg
        self._free_camera.elevation = view.elevation_deg
        self._renderer.update_scene(self._data, camera=self._free_camera)
        self._camera = camera_from_scene(mj, self._renderer.scene, settings.width, settings.height,
                                         "the tabletop camera")

    # ----------------------------------------------------------------------------------------------- public API

    @property
    def camera(self) -> CameraModel:
        """The rendering camera (pinhole model and optical-frame pose), as :class:`FetchScene` reports it."""
        return self._camera

    @property
    def view(self) -> FreeCameraView:
        """The sampled orbit of the free camera around the table-top centre (elevation negative = down)."""
        return self._layout.view

    @property
    def model(self) -> mujoco.MjModel:
        """The compiled MjModel (geoms ``floor``, ``table``, ``object_<instance id>``); treat it as read-only.

        It stays readable after :meth:`close`, which frees only the OpenGL context.
        """
        return self._model

    @property
    def data(self) -> mujoco.MjData:
        """The MjData with the (static) geom poses; stays readable after :meth:`close`."""
        return self._data

    @property
    def table_instance_id(self) -> int:
        return len(self._layout.placements) + 1

    @property
    def labels_by_id(self) -> dict[int, str]:
        """Instance id -> label for every object and the table, e.g. for ``SimDetector(scene.labels_by_id)``."""
        labels = {index + 1: placement.label for index, placement in enumerate(self._layout.placements)}
        labels[self.table_instance_id] = self.TABLE_LABEL
        return labels

    def render(self) -> TabletopFrame:
        """Render the scene; the same seed and settings always give identical frames."""
        self._check_open()
        mj = self._mujoco
        renderer = self._renderer
        renderer.update_scene(self._data, camera=self._free_camera)
        rgb = renderer.render()
        renderer.enable_depth_rendering()
        depth_m = renderer.render()
        renderer.enable_segmentation_rendering()  # also disables depth rendering
        try:
            segmentation = renderer.render()  # (H, W, 2) int32: object id, object type; -1 where nothing was drawn
            alone_pixels = self._alone_pixel_counts()
        finally:
            renderer.disable_segmentation_rendering()
        object_id = segmentation[..., 0]
        # int(): comparing with the pybind enum itself takes numpy's slow object path.
        is_geom = segmentation[..., 1] == int(mj.mjtObj.mjOBJ_GEOM)
        instances = self._geom_to_instance[np.where(is_geom, object_id + 1, 0)]
        # Depth and segmentation are rasterised alike, so "nothing drawn" is exact per pixel; without it the sky
        # would read as the far plane and look like real, distant geometry.
        depth_m[object_id < 0] = np.nan

        n = len(self._layout.placements)
        visible_pixels = np.bincount(instances.ravel(), minlength=n + 2)
        camera_position_m = self._camera.camera_to_world[:3, 3]
        objects = []
        for index, placement in enumerate(self._layout.placements):
            instance_id = index + 1
            visible = int(visible_pixels[instance_id])
            alone = int(alone_pixels[index])
            supported_by = n + 1 if placement.supported_by < 0 else placement.supported_by + 1
            objects.append(
                TabletopObject(
                    instance_id=instance_id,
                    label=placement.label,
                    shape=placement.shape,
                    colour=placement.colour,
                    centre_m=read_only(placement.centre_m.copy()),
                    size_m=read_only(placement.aabb_size_m),
                    yaw_deg=math.degrees(placement.yaw_rad),
                    supported_by=supported_by,
                    visible_pixels=visible,
                    visible_fraction=visible / alone if alone > 0 else 0.0,
                    distance_m=float(np.linalg.norm(placement.centre_m - camera_position_m)),
                )
            )
        pair = self._layout.near_tie_pair
        return TabletopFrame(
            rgb=read_only(rgb),
            depth_m=read_only(depth_m),
            instances=read_only(instances),
            intrinsics=self._camera.intrinsics,
            camera_to_world=RigidTransform.from_matrix(self._camera.camera_to_world),
            objects=tuple(objects),
            table_top_z_m=float(self.settings.table_height_m),
            table_normal=read_only(np.array([0.0, 0.0, 1.0])),
            table_instance_id=self.table_instance_id,
            labels_by_id=self.labels_by_id,
            near_tie_pair=None if pair is None else (pair[0] + 1, pair[1] + 1),
            near_tie_axis=self.settings.near_tie,
        )

    def close(self) -> None:
        """Free the OpenGL context; safe to call twice."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> TabletopScene:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._renderer is None:
            raise SimError("the TabletopScene is closed")

    def _alone_pixel_counts(self) -> np.ndarray:
        """Pixels each object covers with every other geom hidden (the renderer is in segmentation mode).

        MuJoCo leaves geoms with alpha 0 out of the scene entirely. Objects whose projected world boxes do not
        overlap in the image cannot hide each other, so they are drawn in the same pass.
        """
        model = self._model
        rects = [self._pixel_rect(placement) for placement in self._layout.placements]
        counts = np.zeros(len(rects), dtype=np.int64)
        passes: list[list[int]] = []
        for index, rect in enumerate(rects):
            if rect is None:
                continue  # entirely off-image: nothing to draw
            for members in passes:
                if not any(_rects_overlap(rect, rects[other]) for other in members):
                    members.append(index)
                    break
            else:
                passes.append([index])
        saved_alpha = model.geom_rgba[:, 3].copy()
        try:
            for members in passes:
                model.geom_rgba[:, 3] = 0.0
                model.geom_rgba[self._object_geoms[members], 3] = 1.0
                self._renderer.update_scene(self._data, camera=self._free_camera)
                geom_ids = self._renderer.render()[..., 0]
                drawn = np.bincount(geom_ids[geom_ids >= 0].ravel(), minlength=model.ngeom)
                counts[members] = drawn[self._object_geoms[members]]
        finally:
            model.geom_rgba[:, 3] = saved_alpha
            self._renderer.update_scene(self._data, camera=self._free_camera)
        return counts

    def _pixel_rect(self, placement: _Placement) -> tuple[int, int, int, int] | None:
        """Pixel bounds (u0, v0, u1, v1), inclusive, of the object's projected world box; None when off-image."""
        half_m = placement.aabb_size_m / 2.0
        corners_m = placement.centre_m + half_m * np.array(
            [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64
        )
        camera = self._camera
        world_to_camera = np.linalg.inv(camera.camera_to_world)
        optical_m = corners_m @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
        width, height = camera.width, camera.height
        if (optical_m[:, 2] <= 1e-6).any():
            return (0, 0, width - 1, height - 1)  # reaches behind the camera: assume it may cover anything
        u_px = camera.fx * optical_m[:, 0] / optical_m[:, 2] + camera.cx
        v_px = camera.fy * optical_m[:, 1] / optical_m[:, 2] + camera.cy
        u0 = math.floor(u_px.min()) - _SILHOUETTE_MARGIN_PX
        u1 = math.ceil(u_px.max()) + _SILHOUETTE_MARGIN_PX
        v0 = math.floor(v_px.min()) - _SILHOUETTE_MARGIN_PX
        v1 = math.ceil(v_px.max()) + _SILHOUETTE_MARGIN_PX
        if u1 < 0 or v1 < 0 or u0 > width - 1 or v0 > height - 1:
            return None
        return (max(u0, 0), max(v0, 0), min(u1, width - 1), min(v1, height - 1))


# ------------------------------------------------------------------------------------------------------ layout


def _sample_layout(rng: np.random.Generator, settings: TabletopSettings) -> _Layout:
    """Sample the camera, then the objects; restart the objects when rejection sampling gets stuck."""
    low_d, high_d = settings.camera_distance_range_m
    low_e, high_e = settings.camera_elevation_down_range_deg
    low_a, high_a = settings.camera_azimuth_range_deg
    view = FreeCameraView(
        lookat_m=(0.0, 0.0, float(settings.table_height_m)),
        distance_m=float(rng.uniform(low_d, high_d)),
        azimuth_deg=float(rng.uniform(low_a, high_a)),
        elevation_deg=-float(rng.uniform(low_e, high_e)),
    )
    low_n, high_n = settings.num_objects_range
    count = max(int(rng.integers(low_n, high_n + 1)), settings.required_objects)
    for _ in range(_MAX_LAYOUT_RESTARTS):
        layout = _try_layout(rng, settings, view, count)
        if layout is not None:
            return layout
    raise SimError(
        f"could not place {count} objects without overlap in placement_area_m={settings.placement_area_m} after "
        f"{_MAX_LAYOUT_RESTARTS} attempts; use a larger area, fewer or smaller objects"
    )


def _try_layout(
    rng: np.random.Generator, settings: TabletopSettings, view: FreeCameraView, count: int
) -> _Layout | None:
    azimuth_rad = math.radians(view.azimuth_deg)
    forward_xy = np.array([math.cos(azimuth_rad), math.sin(azimuth_rad)])  # the camera's horizontal viewing direction
    left_xy = np.array([-forward_xy[1], forward_xy[0]])
    labels = _LabelPicker(rng)
    high_m = settings.object_size_range_m[1]
    table_z_m = settings.table_height_m
    placements: list[_Placement] = []
    footprints: list[np.ndarray] = []  # (2, 2): [[x0, y0], [x1, y1]] per stand-alone object or stack

    for _ in range(settings.stacks):
        base = _new_object(rng, settings, labels.pick(FLAT_TOPPED_SHAPES), min_side_m=min(_STACK_BASE_MIN_M, high_m))
        top = _new_object(rng, settings, labels.pick(tuple(SHAPES)), max_side_m=float(min(base.dims_m[:2])))
        offset_xy = rng.uniform(-1.0, 1.0, size=2) * _STACK_OFFSET * float(min(base.dims_m[:2]))
        base_half, top_half = base.aabb_size_m[:2] / 2.0, top.aabb_size_m[:2] / 2.0
        # The stack's footprint relative to the base centre: the union of both objects' footprints.
        low_rel = np.minimum(-base_half, offset_xy - top_half)
        high_rel = np.maximum(base_half, offset_xy + top_half)
        centre_xy = _place(rng, settings, footprints, low_rel, high_rel)
        if centre_xy is None:
            return None
        base.centre_m = np.array([*centre_xy, table_z_m + base.dims_m[2] / 2.0])
        base.supported_by = -1
        top.centre_m = np.array([*(centre_xy + offset_xy), table_z_m + base.dims_m[2] + top.dims_m[2] / 2.0])
        top.supported_by = len(placements)
        placements += [base, top]

    near_tie_pair = None
    if settings.near_tie != "none":
        first = _new_object(rng, settings, labels.pick(tuple(SHAPES)))
        second = _new_object(rng, settings, labels.pick(tuple(SHAPES)))
        first_half, second_half = first.aabb_size_m[:2] / 2.0, second.aabb_size_m[:2] / 2.0
        first_xy = _place(rng, settings, footprints, -first_half, first_half)
        if first_xy is None:
            return None
        tie_xy, spread_xy = (left_xy, forward_xy) if settings.near_tie == "left" else (forward_xy, left_xy)
        # Centres at least the sum of the boxes' half-diagonals apart: the footprints then lie in disjoint circles.
        min_spread_m = float(np.linalg.norm(first_half) + np.linalg.norm(second_half)) + settings.min_gap_m
        for _ in range(_MAX_TRIES_PER_ITEM):
            # 0.9: strictly inside the tolerance, also after the float rounding of MJCF and projections.
            along_m = rng.uniform(-0.9, 0.9) * settings.near_tie_tolerance_m
            spread_m = rng.choice([-1.0, 1.0]) * rng.uniform(min_spread_m, min_spread_m + 0.15)
            second_xy = first_xy + along_m * tie_xy + spread_m * spread_xy
            if _fits(settings, footprints, second_xy - second_half, second_xy + second_half):
                break
        else:
            return None
        footprints.append(np.array([second_xy - second_half, second_xy + second_half]))
        for placement, xy in ((first, first_xy), (second, second_xy)):
            placement.centre_m = np.array([*xy, table_z_m + placement.dims_m[2] / 2.0])
            placement.supported_by = -1
        near_tie_pair = (len(placements), len(placements) + 1)
        placements += [first, second]

    while len(placements) < count:
        placement = _new_object(rng, settings, labels.pick(tuple(SHAPES)))
        half = placement.aabb_size_m[:2] / 2.0
        centre_xy = _place(rng, settings, footprints, -half, half)
        if centre_xy is None:
            return None
        placement.centre_m = np.array([*centre_xy, table_z_m + placement.dims_m[2] / 2.0])
        placement.supported_by = -1
        placements.append(placement)
    return _Layout(view=view, placements=tuple(placements), near_tie_pair=near_tie_pair)


class _LabelPicker:
    """Draws (colour, shape) pairs without replacement, so labels are unique within a scene."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._used: set[tuple[str, str]] = set()

    def pick(self, shapes: tuple[str, ...]) -> tuple[str, str]:
        free = [(colour, shape) for shape in shapes for colour in COLOURS if (colour, shape) not in self._used]
        if not free:
            raise SimError(f"no unused colour left for shapes {shapes}")
        choice = free[int(self._rng.integers(len(free)))]
        self._used.add(choice)
        return choice


def _new_object(
    rng: np.random.Generator,
    settings: TabletopSettings,
    colour_shape: tuple[str, str],
    min_side_m: float | None = None,
    max_side_m: float | None = None,
) -> _Placement:
    """Sample an object's extents: heights from the size range, footprint sides within [min_side, max_side]."""
    colour, shape = colour_shape
    low_m, high_m = settings.object_size_range_m
    foot_low_m = max(low_m, min_side_m) if min_side_m is not None else low_m
    foot_high_m = min(high_m, max_side_m) if max_side_m is not None else high_m
    foot_low_m = min(foot_low_m, foot_high_m)
    match shape:
        case "cube":
            side_m = rng.uniform(foot_low_m, foot_high_m)
            dims_m = np.array([side_m, side_m, side_m])
        case "box":
            # Resample until the sides are clearly unequal; the size range allows it (high >= 2 * low).
            for _ in range(100):
                dims_m = np.array([rng.uniform(foot_low_m, foot_high_m), rng.uniform(foot_low_m, foot_high_m),
                                   rng.uniform(low_m, high_m)])
                if dims_m.max() >= _BOX_ASPECT * dims_m.min():
                    break
        case "cylinder":
            diameter_m = rng.uniform(foot_low_m, foot_high_m)
            dims_m = np.array([diameter_m, diameter_m, rng.uniform(low_m, high_m)])
        case "sphere":
            diameter_m = rng.uniform(foot_low_m, foot_high_m)
            dims_m = np.array([diameter_m, diameter_m, diameter_m])
        case _:  # capsule: height at least 1.5 diameters, so it looks like one
            diameter_m = rng.uniform(foot_low_m, max(foot_low_m, min(foot_high_m, high_m / _CAPSULE_ASPECT)))
            height_m = rng.uniform(_CAPSULE_ASPECT * diameter_m, max(_CAPSULE_ASPECT * diameter_m, high_m))
            dims_m = np.array([diameter_m, diameter_m, height_m])
    yaw_rad = 0.0
    if settings.rotate_boxes and shape in ("cube", "box"):
        yaw_rad = float(rng.uniform(0.0, math.pi / 2.0))  # a box is symmetric under 90 degree turns
    return _Placement(shape=shape, colour=colour, dims_m=dims_m, yaw_rad=yaw_rad)


def _place(
    rng: np.random.Generator,
    settings: TabletopSettings,
    footprints: list[np.ndarray],
    low_rel_m: np.ndarray,
    high_rel_m: np.ndarray,
) -> np.ndarray | None:
    """Sample a centre whose footprint [centre + low_rel, centre + high_rel] fits; record it; None if none found."""
    area_half_m = np.asarray(settings.placement_area_m) / 2.0
    low_centre_m, high_centre_m = -area_half_m - low_rel_m, area_half_m - high_rel_m
    if (low_centre_m > high_centre_m).any():
        return None
    for _ in range(_MAX_TRIES_PER_ITEM):
        centre_xy = rng.uniform(low_centre_m, high_centre_m)
        if _fits(settings, footprints, centre_xy + low_rel_m, centre_xy + high_rel_m):
            footprints.append(np.array([centre_xy + low_rel_m, centre_xy + high_rel_m]))
            return centre_xy
    return None


def _fits(settings: TabletopSettings, footprints: list[np.ndarray], low_m: np.ndarray, high_m: np.ndarray) -> bool:
    """Whether the footprint lies in the placement area and keeps min_gap_m from every recorded footprint."""
    area_half_m = np.asarray(settings.placement_area_m) / 2.0
    if (low_m < -area_half_m).any() or (high_m > area_half_m).any():
        return False
    gap_m = settings.min_gap_m
    for other in footprints:
        if (low_m < other[1] + gap_m).all() and (high_m > other[0] - gap_m).all():
            return False
    return True


# -------------------------------------------------------------------------------------------------------- MJCF


def _mjcf(layout: _Layout, settings: TabletopSettings) -> str:
    """The MuJoCo model; numbers are written with repr() so the model holds exactly the ground-truth values."""
    table_x_m, table_y_m = settings.table_size_m
    table_z_m = settings.table_height_m
    shadow = "true" if settings.shadows else "false"
    geoms = []
    for instance_id, placement in enumerate(layout.placements, start=1):
        mujoco_type = SHAPES[placement.shape]
        dx, dy, dz = (float(v) for v in placement.dims_m)
        match mujoco_type:
            case "box":
                size = (dx / 2.0, dy / 2.0, dz / 2.0)
            case "cylinder":
                size = (dx / 2.0, dz / 2.0)
            case "sphere":
                size = (dx / 2.0,)
            case _:  # capsule: radius and half-length of the cylindrical part
                size = (dx / 2.0, dz / 2.0 - dx / 2.0)
        half_yaw = placement.yaw_rad / 2.0
        quat = (math.cos(half_yaw), 0.0, 0.0, math.sin(half_yaw))
        rgba = (*COLOURS[placement.colour], 1.0)
        geoms.append(
            f'    <geom name="object_{instance_id}" type="{mujoco_type}" size="{_numbers(size)}" '
            f'pos="{_numbers(placement.centre_m)}" quat="{_numbers(quat)}" rgba="{_numbers(rgba)}"/>'
        )
    objects = "\n".join(geoms)
    return f"""<mujoco model="tabletop">
  <statistic center="0 0 {table_z_m!r}" extent="2"/>
  <visual>
    <!-- Finer tessellation than the default 28 x 16: curved surfaces then render within ~0.6 mm of their true
         shape (the default is off by up to 3 mm at grazing angles), at no measurable cost. -->
    <global fovy="{float(settings.fovy_deg)!r}" offwidth="{settings.width}" offheight="{settings.height}"/>
    <quality numslices="64" numstacks="32"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" specular="0.1 0.1 0.1"/>
  </visual>
  <asset>
    <texture name="floor" type="2d" builtin="checker" rgb1="0.35 0.35 0.38" rgb2="0.45 0.45 0.48" width="256"
             height="256"/>
    <material name="floor" texture="floor" texrepeat="20 20"/>
  </asset>
  <worldbody>
    <light name="overhead" pos="0.3 -0.4 2.5" dir="-0.1 0.15 -1" diffuse="0.5 0.5 0.5" castshadow="{shadow}"/>
    <geom name="floor" type="plane" size="5 5 0.05" material="floor"/>
    <geom name="table" type="box" size="{_numbers((table_x_m / 2.0, table_y_m / 2.0, table_z_m / 2.0))}"
          pos="0 0 {table_z_m / 2.0!r}" rgba="{_numbers(_TABLE_RGBA)}"/>
{objects}
  </worldbody>
</mujoco>
"""


def _numbers(values: Any) -> str:
    return " ".join(repr(float(v)) for v in values)


# ------------------------------------------------------------------------------------------------------ helpers


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if not (math.isfinite(value[0]) and math.isfinite(value[1]) and low <= value[0] <= value[1] <= high):
        raise SimError(f"{name}={value} must satisfy {low} <= low <= high <= {high}")


def _rects_overlap(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int] | None) -> bool:
    if a is None or b is None:
        return False
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


