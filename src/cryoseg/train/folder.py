"""A trained model's folder: the one on-disk form of every model cryoseg trains.

    FOLDER/
      model.safetensors   the trained weights (state dict; no pickle, so loading runs no code)
      config.json         {"format": "cryoseg-model", "version": 1, "kind": KIND, "config": {...}}: what the
                          model's builder needs to make the architecture again
      report.json         written last: class names, encoders used, training history, versions, timings...

The folder is written through `staged_folder`, so until report.json is in place it is incomplete, and a killed
save never leaves a folder that loads. The loader names what is wrong in one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import CorruptFileError, InputError
from ..io.atomic import staged_folder
from ..io.report import REPORT, write_report

MODEL_FORMAT = "cryoseg-model"
MODEL_VERSION = 1  # the newest folder version this cryoseg reads and the one it writes
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
_RESERVED_META = ("path", "created", "versions", "kind")  # report.json keys cryoseg writes itself


class ModelFolder(NamedTuple):
    """What `load_model_folder` returns; unpacks as (state_dict, config, meta).

    Attributes:
        state_dict: name -> CPU tensor, as saved.
        config: the builder's settings given to `save_model_folder`.
        meta: the whole report.json (the saved meta plus kind, creation time and versions).
    """

    state_dict: dict[str, Any]
    config: dict[str, Any]
    meta: dict[str, Any]


def _check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not kind.strip():
        raise InputError(f"a model kind must be a non-empty name such as 'scsam', got {kind!r}")
    return kind


def save_model_folder(folder: str | Path, state_dict: Mapping[str, Any], config: Mapping[str, Any],
                      meta: Mapping[str, Any], *, kind: str, inputs: Iterable[str | Path] = ()) -> Path:
    """Write a trained model's folder (see the module docstring), complete or not at all.

    Args:
        folder: the folder (created; files of it that are not written here are left alone).
        state_dict: name -> torch tensor (e.g. `model.state_dict()`, or only the trained modules' part).
        config: JSON-ready settings from which the model's builder makes the architecture again.
        meta: JSON-ready record for report.json (class names, encoders, `History`...); the keys "path",
            "created", "versions" and "kind" are cryoseg's own.
        kind: which model this is ("scsam", "unet-student", ...); the loader refuses another kind.
        inputs: files this model was made from, never to be overwritten (e.g. a model folder being fine-tuned).

    Returns:
        The folder's path.
    """
    import torch
    from safetensors.torch import save_file

    _check_kind(kind)
    try:
        config_text = json.dumps({"format": MODEL_FORMAT, "version": MODEL_VERSION, "kind": kind,
                                  "config": dict(config)}, indent=2)
    except (TypeError, ValueError) as exc:
        raise InputError(f"the model config must be JSON-ready: {exc}") from exc
    reserved = sorted(k for k in meta if k in _RESERVED_META)
    if reserved:
        raise InputError(f"model meta may not use the keys {reserved}: cryoseg writes them itself")
    tensors = {}
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"state_dict entry {name!r} is a {type(value).__name__}, not a tensor")
        # own contiguous CPU copies: safetensors refuses views and tensors that share memory (tied weights)
        tensors[str(name)] = value.detach().to("cpu").contiguous().clone()
    with staged_folder(folder, REPORT, inputs=inputs) as stage:
        save_file(tensors, str(stage / WEIGHTS), metadata={"format": "pt"})
        (stage / CONFIG).write_text(config_text + "\n")
        write_report(stage / REPORT, kind=kind, **dict(meta))
    return Path(folder)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    if not isinstance(data, dict):
        raise CorruptFileError(f"{path} does not hold a JSON object")
    return data


def _check_config(folder: Path, data: dict[str, Any], kind: str) -> dict[str, Any]:
    found = data.get("format")
    if found != MODEL_FORMAT:
        what = "has no 'format'" if found is None else f"has format {found!r}"
        raise InputError(f"{folder} is not a cryoseg model folder: its {CONFIG} {what}, expected {MODEL_FORMAT!r}")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CorruptFileError(f"{folder / CONFIG} has an invalid version {version!r}")
    if version > MODEL_VERSION:
        raise InputError(f"model folder {folder} has version {version}, written by a newer cryoseg; this one reads "
                         f"up to version {MODEL_VERSION}: upgrade cryoseg")
    if data.get("kind") != kind:
        raise InputError(f"model folder {folder} holds a {data.get('kind')!r} model, not {kind!r}")
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise CorruptFileError(f"{folder / CONFIG}: 'config' is not a JSON object")
    return config


def load_model_folder(folder: str | Path, kind: str) -> ModelFolder:
    """Read a folder written by `save_model_folder`, checking that it is complete and holds a model of `kind`.

    Errors (one line each): `InputError` when the path is not a folder, files are missing (named), the folder
    holds another format or kind, or a newer version than this cryoseg reads; `CorruptFileError` when a file
    cannot be read.

    Returns:
        ModelFolder(state_dict, config, meta): CPU tensors by name, the builder's config, report.json.
    """
    from safetensors.torch import load_file

    _check_kind(kind)
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"model folder {folder} does not exist")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder; a cryoseg model is a folder with {WEIGHTS}, {CONFIG} and "
                         f"{REPORT}")
    missing = [name for name in (WEIGHTS, CONFIG, REPORT) if not (folder / name).is_file()]
    config: dict[str, Any] = {}
    if CONFIG not in missing:  # another program's folder: say so rather than list what it lacks
        config = _check_config(folder, _read_json(folder / CONFIG), kind)
    if missing:
        hint = " (an interrupted save?)" if missing == [REPORT] else ""
        raise InputError(f"model folder {folder} is incomplete: missing {', '.join(missing)}{hint}")
    meta = _read_json(folder / REPORT)
    try:
        state = load_file(str(folder / WEIGHTS), device="cpu")
    except Exception as exc:  # safetensors raises its own error type (and OSError) on truncated or foreign files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CorruptFileError(f"cannot read {folder / WEIGHTS}: {first}") from exc
    return ModelFolder(state, config, meta)
