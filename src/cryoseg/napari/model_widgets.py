"""Dock widgets that segment a tomogram layer with a trained model folder: ScSAM (`cryoseg scsam train`) and the
unsupervised method's student (`cryoseg unsup train` / `run`). Each loads its model once per folder and adds the
label layer (class names shown on hover); the student's particle centres come as a points layer too."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, PushButton

from ..errors import InputError
from ..models.loaded import loaded_once, model_folder_key
from .layers import layer_attributes, points_layer, put_layer, tomogram_layers, volume_from_layer, volume_layer
from .tasks import TaskPanel

if TYPE_CHECKING:
    import napari

    from ..io.volume import Volume


class ModelWidget(Container):
    """A model folder, a tomogram layer, a Segment button and the task panel; subclasses say how to predict."""

    title = "segmenting"

    def __init__(self, napari_viewer: napari.viewer.Viewer, extra: list | None = None) -> None:
        self.viewer = napari_viewer
        self.model = FileEdit(label="model folder", mode="d")
        self.tomogram = ComboBox(label="tomogram", choices=lambda _: tomogram_layers(self.viewer))
        self.run_button = PushButton(text="Segment")
        self.tasks = TaskPanel()
        super().__init__(widgets=[self.model, self.tomogram, *(extra or []), self.run_button, self.tasks])
        self.run_button.changed.connect(self.run)
        self.viewer.layers.events.inserted.connect(lambda _: self.tomogram.reset_choices())
        self.viewer.layers.events.removed.connect(lambda _: self.tomogram.reset_choices())

    def run(self) -> bool:
        """Segment the chosen tomogram with the model folder in a worker thread; returns whether it started."""
        try:
            layer = self.tomogram.value
            if layer is None:
                raise InputError("open a tomogram first (an image layer with three dimensions)")
            folder = Path(self.model.value or "")
            if not folder.is_dir() or str(self.model.value) in ("", "."):
                raise InputError(f"choose a trained model folder ({folder} is not a folder)")
            self.check(folder)
            volume = volume_from_layer(layer.data, layer_attributes(layer))
        except Exception as exc:  # noqa: BLE001 - a refusal ends in the status line, as a job's would
            self.tasks.show_error(exc)
            return False
        return self.tasks.run(self.title, lambda: self.predict(folder, volume),
                              lambda result: self.show(result, layer.name))

    def model_kind(self) -> str:
        """The kind recorded in this widget's model folders."""
        raise NotImplementedError

    def check(self, folder: Path) -> None:
        """Refuse a folder that is not this kind of model, or is incomplete (before any work)."""
        from ..train.folder import load_model_folder

        load_model_folder(folder, self.model_kind())

    def predict(self, folder: Path, volume: Volume) -> Any:
        """The prediction (in the worker thread)."""
        raise NotImplementedError

    def show(self, result: Any, name: str) -> str:
        """Add the result's layers; returns the status text."""
        raise NotImplementedError

class ScsamWidget(ModelWidget):
    """Segment a tomogram into the classes of a trained ScSAM model, slice by slice (optionally fused over views)."""

    title = "ScSAM"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        self.views = ComboBox(label="views", choices=["z", "z, y, x"], value="z",
                              tooltip="slice along z only, or average the class probabilities of three views")
        super().__init__(napari_viewer, [self.views])

    def model_kind(self) -> str:
        from ..pipelines.scsam import MODEL_KIND

        return MODEL_KIND

    def predict(self, folder: Path, volume: Volume) -> Any:
        from ..pipelines.scsam import load_model, predict

        loaded, _ = loaded_once(("scsam", *model_folder_key(folder), None, None), lambda: load_model(folder))
        return predict(folder, volume, views=tuple(v.strip() for v in self.views.value.split(",")), loaded=loaded)

    def show(self, result: Any, name: str) -> str:
        names = ["background", *result.class_names]
        data, kwargs, kind = volume_layer(result.labels, f"{name} ScSAM", "labels")
        put_layer(self.viewer, data, {**kwargs, "features": {"index": np.arange(len(names)), "class": names}}, kind)
        return f"{len(result.class_names)} class(es): {', '.join(result.class_names)}"


class UnsupWidget(ModelWidget):
    """Segment a tomogram into membrane and particles with a trained student of the unsupervised method."""

    title = "unsupervised segmentation"

    def model_kind(self) -> str:
        from ..pipelines.unsup import MODEL_KIND

        return MODEL_KIND

    def predict(self, folder: Path, volume: Volume) -> Any:
        from ..pipelines.unsup import load_student, segment

        loaded, _ = loaded_once(("unsup", *model_folder_key(folder), None), lambda: load_student(folder))
        return segment(folder, volume, loaded=loaded)

    def show(self, result: Any, name: str) -> str:
        from ..unsup.labels import CLASS_NAMES

        names = ["background", *CLASS_NAMES]
        data, kwargs, kind = volume_layer(result.labels, f"{name} unsupervised", "labels")
        put_layer(self.viewer, data, {**kwargs, "features": {"index": np.arange(len(names)), "class": names}}, kind)
        vol = result.labels
        put_layer(self.viewer, *points_layer(result.particles, vol.voxel_size, vol.origin, name=f"{name} particles"))
        return f"{len(result.particles)} particle(s)"
