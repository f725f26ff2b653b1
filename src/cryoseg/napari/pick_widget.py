"""The "Segment and pick" dock widget: click a particle, see its 3D mask; pick every one of its kind.

The user clicks positive and negative points in the "cryoseg prompts" points layer on a tomogram. "Segment" grows
each positive point into a 3D instance (cross-plane self-prompting); "Pick all of this kind" runs the whole
pipeline. Results land in a labels layer ("cryoseg instances") and a points layer ("cryoseg picks", coloured by
score; the score slider hides low-scoring picks, which the points writer then leaves out). With "update on each
click", a new positive point segments at once, a new negative point reruns the last action, and deleting a pick
makes it a negative point, so the search runs again with it as a negative exemplar.

Each tomogram layer gets an `InteractiveSession`: models load once and slice embeddings and features are computed
once (and kept in the cache folder), so after the first run a click costs only its own instance.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    FloatSpinBox,
    LineEdit,
    PushButton,
    RadioButtons,
)

from ..matching.config import MatchingConfig
from ..models.registry import DEFAULT_FEATURES, DEFAULT_SEGMENTER, model_names
from ..pipelines.config import PickConfig
from ..segment3d import SelfPromptConfig
from .layers import (
    METADATA_KEY,
    UNITS,
    geometry_kwargs,
    layer_attributes,
    layer_geometry,
    points_layer,
    preferred_unit,
    put_layer,
    save_preferred_unit,
    tomogram_layers,
    volume_from_layer,
)
from .tasks import TaskPanel

if TYPE_CHECKING:
    import napari

    from ..pipelines.interactive import InteractiveSession

PROMPTS, INSTANCES, PICKS = "cryoseg prompts", "cryoseg instances", "cryoseg picks"
POSITIVE, NEGATIVE = "positive", "negative"
KIND_COLOURS = {POSITIVE: (0.0, 1.0, 0.0, 1.0), NEGATIVE: (1.0, 0.0, 0.0, 1.0)}


def default_cache_dir() -> Path:
    """`$CRYOSEG_HOME/cache`: embeddings and features of the tomograms opened in napari."""
    from ..models.weights import cryoseg_home

    return cryoseg_home() / "cache"


def _particle_diameter(result: Any) -> float:
    """Diameter in voxels of the sphere as large as a run's median instance (8 without instances)."""
    from ..geometry import equivalent_radius

    sizes = [r.voxels for r in result.kept]
    return 2 * equivalent_radius(float(np.median(sizes))) if sizes else 8.0


class PickWidget(Container):
    """Prompted segmentation and picking on the tomogram chosen in `tomogram` (see the module's docstring)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self.viewer = napari_viewer
        self.tomogram = ComboBox(label="tomogram", choices=lambda _: tomogram_layers(self.viewer))
        self.kind = RadioButtons(label="next point", choices=[POSITIVE, NEGATIVE], value=POSITIVE,
                                 orientation="horizontal")
        self.segmenter = ComboBox(label="segmenter", choices=model_names("segmenter"), value=DEFAULT_SEGMENTER)
        self.weights = LineEdit(label="segmenter weights", tooltip="folder, hub id or checkpoint (empty: default)")
        self.features = ComboBox(label="features", choices=model_names("features"), value=DEFAULT_FEATURES)
        self.feature_weights = LineEdit(label="feature weights", tooltip="folder or hub id (empty: default)")
        self.cache = FileEdit(label="cache folder", mode="d", value=default_cache_dir())
        self.tau_iou = FloatSpinBox(label="stop below IoU", min=0.0, max=1.0, step=0.05,
                                    value=SelfPromptConfig().tau_iou)
        self.tau_sim = FloatSpinBox(label="match similarity", min=-1.0, max=1.0, step=0.05,
                                    value=MatchingConfig().tau_sim)
        self.auto_cut = CheckBox(text="choose the score cut from the scores", value=True)
        self.cut = FloatSpinBox(label="score cut", min=-1.0, max=1.0, step=0.05, value=0.5, enabled=False)
        self.follow_clicks = CheckBox(text="update on each click", value=True)
        self.segment_button = PushButton(text="Segment")
        self.pick_button = PushButton(text="Pick all of this kind")
        self.min_score = FloatSlider(label="show picks scoring ≥", min=-1.0, max=1.0, step=0.01, value=-1.0)
        self.unit = ComboBox(label="layer unit", choices=list(UNITS), value=preferred_unit())
        self.tasks = TaskPanel()
        super().__init__(widgets=[self.tomogram, self.kind, self.segment_button, self.pick_button, self.min_score,
                                  self.follow_clicks, self.segmenter, self.weights, self.features,
                                  self.feature_weights, self.cache, self.tau_iou, self.tau_sim, self.auto_cut,
                                  self.cut, self.unit, self.tasks])
        self._sessions: dict[tuple, InteractiveSession] = {}
        self.last_result: Any = None  # the latest `SegmentResult` or `PickResult`
        self._last_action: str | None = None
        self._pending: str | None = None
        self._shown_picks = np.zeros((0, 3))
        self._quiet = False  # set while the widget itself edits layers, so its own edits trigger nothing

        self.kind.changed.connect(self._kind_changed)
        self.auto_cut.changed.connect(lambda on: setattr(self.cut, "enabled", not on))
        self.segment_button.changed.connect(lambda: self.run("segment"))
        self.pick_button.changed.connect(lambda: self.run("pick"))
        self.min_score.changed.connect(self._filter_picks)
        self.unit.changed.connect(self._unit_changed)
        self.tasks.idle.append(self._run_pending)  # a click that came while a job ran
        self.viewer.layers.events.inserted.connect(self._layer_added)
        self.viewer.layers.events.removed.connect(lambda _: self.tomogram.reset_choices())
        if self.tomogram.value is not None:
            self.prompts_layer()

    # ----- layers

    def _layer_added(self, event: Any) -> None:
        """A new tomogram gets the prompts layer, ready for clicks (layers are only ever made on additions: removals
        come in cascades, as when napari closes)."""
        self.tomogram.reset_choices()
        if event.value in tomogram_layers(self.viewer) and self._layer(PROMPTS) is None:
            self.prompts_layer()

    def _layer(self, name: str) -> Any:
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _geometry(self) -> dict[str, Any]:
        """Layer kwargs placing data in the voxels of the chosen tomogram."""
        voxel_size, origin = layer_geometry(layer_attributes(self.tomogram.value))
        return geometry_kwargs(voxel_size, origin, self.unit.value)

    def prompts_layer(self) -> Any:
        """The "cryoseg prompts" points layer (made on the chosen tomogram's geometry if absent), in add mode."""
        layer = self._layer(PROMPTS)
        if layer is None and self.tomogram.value is not None:
            layer = self.viewer.add_points(np.zeros((0, 3)), name=PROMPTS, size=6, border_color="white",
                                           features={"kind": np.array([], dtype=object)},
                                           **self._geometry())
            layer.feature_defaults["kind"] = self.kind.value
            layer.events.data.connect(self._prompts_edited)
            layer.mode = "add"
            self.viewer.layers.selection.active = layer
        return layer

    def _kind_changed(self, kind: str) -> None:
        layer = self._layer(PROMPTS)
        if layer is not None:
            layer.feature_defaults["kind"] = kind

    def _to_voxels(self, layer: Any, coords: np.ndarray) -> np.ndarray:
        """(N, 3) data coordinates of `layer` as z, y, x voxels of the chosen tomogram."""
        tomo = self.tomogram.value
        return np.array([tomo.world_to_data(layer.data_to_world(c)) for c in coords]).reshape(-1, 3)

    def prompts(self) -> tuple[np.ndarray, np.ndarray]:
        """(positive, negative) points, each (N, 3) z, y, x voxels of the chosen tomogram."""
        layer = self.prompts_layer()
        if layer is None or not len(layer.data):
            return np.zeros((0, 3)), np.zeros((0, 3))
        kinds = np.asarray(layer.features["kind"], dtype=object)
        voxels = self._to_voxels(layer, np.asarray(layer.data))
        return voxels[kinds != NEGATIVE], voxels[kinds == NEGATIVE]

    def _recolour(self, layer: Any) -> None:
        kinds = np.asarray(layer.features["kind"], dtype=object)
        if len(kinds):
            layer.face_color = np.array([KIND_COLOURS.get(k, KIND_COLOURS[POSITIVE]) for k in kinds])

    def add_prompts(self, voxels: np.ndarray, kind: str) -> None:
        """Add points of `kind` at (N, 3) z, y, x voxels of the tomogram (as clicks would)."""
        layer = self.prompts_layer()
        default = layer.feature_defaults["kind"][0]
        layer.feature_defaults["kind"] = kind
        try:
            layer.add(np.asarray(voxels, float).reshape(-1, 3))
        finally:
            layer.feature_defaults["kind"] = default

    def _prompts_edited(self, event: Any) -> None:
        layer = self._layer(PROMPTS)
        if layer is None or str(event.action) not in ("added", "removed", "changed"):
            return
        self._recolour(layer)
        if str(event.action) != "added" or self._quiet or not self.follow_clicks.value:
            return
        new = np.asarray(layer.features["kind"], dtype=object)[-len(event.data_indices):]
        if (new == POSITIVE).any() and self._last_action != "pick":
            self.run("segment")
        elif self._last_action is not None:
            self.run(self._last_action)

    def _picks_edited(self, event: Any) -> None:
        """Deleted picks become negative points (and, following clicks, the search runs again without them)."""
        layer = self._layer(PICKS)
        if self._quiet or layer is None or str(event.action) != "removed":
            return
        kept = {tuple(np.round(c, 6)) for c in np.asarray(layer.data)}
        deleted = np.array([c for c in self._shown_picks if tuple(np.round(c, 6)) not in kept]).reshape(-1, 3)
        self._shown_picks = np.asarray(layer.data).copy()
        if len(deleted):
            self.add_prompts(self._to_voxels(layer, deleted), NEGATIVE)

    # ----- settings

    def _unit_changed(self, unit: str) -> None:
        """Remember the unit and show every cryoseg layer's scale in it."""
        save_preferred_unit(unit)
        for layer in self.viewer.layers:
            saved = layer.metadata.get(METADATA_KEY)
            if saved:
                geometry = geometry_kwargs(*layer_geometry(layer_attributes(layer)), unit)
                layer.scale, layer.translate, layer.units = (geometry["scale"], geometry["translate"],
                                                             geometry["units"])

    def pick_config(self) -> PickConfig:
        """The pick's settings from the widget."""
        from ..pipelines.pick_query import with_settings

        return with_settings(PickConfig(), segment={"tau_iou": self.tau_iou.value},
                             matching={"tau_sim": self.tau_sim.value},
                             verify={"cut": None if self.auto_cut.value else self.cut.value})

    def session(self) -> InteractiveSession:
        """The chosen tomogram's session (made on first use; a new cache folder makes a new one)."""
        from ..errors import InputError
        from ..pipelines.interactive import InteractiveSession

        layer = self.tomogram.value
        if layer is None:
            raise InputError("open a tomogram first (an image layer with three dimensions)")
        cache = str(self.cache.value) if self.cache.value and str(self.cache.value) not in ("", ".") else None
        volume = volume_from_layer(layer.data, layer_attributes(layer))
        key = (id(layer), id(layer.data), cache, volume.voxel_size)
        if key not in self._sessions:
            self._sessions[key] = InteractiveSession(volume, cache_dir=cache)
        return self._sessions[key]

    # ----- running

    @property
    def busy(self) -> bool:
        """Whether a job runs or waits to run."""
        return self.tasks.busy or self._pending is not None

    def run(self, action: str) -> bool:
        """Start "segment" or "pick" with the current prompts; while a job runs, the request waits for it.
        Returns whether a job started now."""
        if self.tasks.busy:
            self._pending = action
            return False
        try:
            session = self.session()
            positives, negatives = self.prompts()
        except Exception as exc:  # noqa: BLE001 - any refusal ends in the status line, as a job's would
            self.tasks.show_error(exc)
            return False
        if not len(positives):
            self.tasks.status.value = "click a particle first (a positive point in 'cryoseg prompts')"
            return False
        names = {"segmenter": self.segmenter.value, "weights": self.weights.value or None}
        self._last_action = action
        if action == "segment":
            config = SelfPromptConfig(tau_iou=self.tau_iou.value)
            return self.tasks.run("segmenting", lambda: session.segment(positives, negatives, config=config, **names),
                                  self._show_segmentation)
        config = self.pick_config()
        features = {"features": self.features.value, "feature_weights": self.feature_weights.value or None}
        return self.tasks.run("picking", lambda: session.pick(positives, negatives, config=config, **names,
                                                              **features), self._show_pick)

    def _run_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self.run(pending)

    def _show_instances(self, result: Any) -> None:
        put_layer(self.viewer, np.asarray(result.instances.data), {"name": INSTANCES, **self._geometry()}, "labels")

    def _show_segmentation(self, result: Any) -> str:
        self.last_result = result
        self._show_instances(result)
        self.viewer.layers.selection.active = self.prompts_layer()
        return f"{len(result.kept)} instance(s)"

    def _show_pick(self, result: Any) -> str:
        self.last_result = result
        self._quiet = True
        try:
            self._show_instances(result)
            particles = result.particles
            _, kwargs, _ = points_layer(particles, result.instances.voxel_size, name=PICKS,
                                        size=_particle_diameter(result))
            layer = self._layer(PICKS)
            if layer is None:
                layer = self.viewer.add_points(particles.coords, **kwargs)
                layer.events.data.connect(self._picks_edited)
            else:
                layer.data = particles.coords
                layer.features, layer.size = kwargs.get("features", {}), kwargs["size"]
                if len(particles):
                    layer.border_colormap, layer.border_color = "viridis", "score"
            self._shown_picks = particles.coords.copy()
            if particles.scores is not None and len(particles):
                lo = float(np.floor(particles.scores.min() * 100) / 100)
                self.min_score.min = min(lo, self.min_score.max - 0.01)
                self.min_score.value = self.min_score.min
            self._filter_picks()
        finally:
            self._quiet = False
        self.viewer.layers.selection.active = self.prompts_layer()
        return f"{len(result.particles)} pick(s) of this kind"

    def _filter_picks(self, _value: Any = None) -> None:
        layer = self._layer(PICKS)
        if layer is not None and "score" in layer.features:
            layer.shown = np.asarray(layer.features["score"], float) >= self.min_score.value
