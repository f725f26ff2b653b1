"""What every model cryoseg trains shares: 2D samples from volumes (`data`), dihedral augmentation (`augment`), the
training loop (`loop`, with `config` and `history`), the trained model's folder (`folder`) and training curves
(`curves`).

Submodules are imported on use, so `import cryoseg.train` loads neither torch nor Pillow.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "SliceSet": "data", "batch_indices": "data", "check_labels": "data", "slices_from_volumes": "data",
    "split": "data",
    "Dihedral": "augment", "all_dihedral": "augment", "random_dihedral": "augment",
    "TrainConfig": "config", "History": "history", "TrainingError": "loop", "fit": "loop",
    "MODEL_FORMAT": "folder", "MODEL_VERSION": "folder", "ModelFolder": "folder", "load_model_folder": "folder",
    "save_model_folder": "folder",
    "plot_curves": "curves", "render_curves": "curves",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
