"""Locating model weights on this machine, and hashing them for signatures. Never downloads unless asked.

Weights come from (in this order when the user gives no `weights`):
0. cryoseg's own compact models: the package's `models/packaged/<name>/`, checked against its SHA256SUMS;
1. the Hugging Face hub cache (`$HF_HUB_CACHE`, `$HF_HOME/hub` or `~/.cache/huggingface/hub`), by hub id;
2. Meta's original checkpoint file in the default checkpoint folder (`$CRYOSEG_HOME/checkpoints`, default
   `~/.cache/cryoseg/checkpoints`), for SAM ViT-B/L/H.
A user-given `weights` is a transformers-format folder, an original `.pth` file, or a hub id (cache only,
unless `download=True`). Anything missing is a `WeightsNotFoundError` saying where we looked and how to get it.

What a weights folder must hold is the spec's to say (`ModelSpec.weights_marker`, `ModelSpec.weights_parts`):
a transformers model has config.json with the weight files beside it; a diffusers pipeline (Stable Diffusion)
has model_index.json at the root and one subfolder per part (unet/, vae/, text_encoder/), each with its
config.json and the weight file that `from_pretrained` reads. The same rule serves user folders and hub-cache
snapshots.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CorruptFileError, InputError, WeightsNotFoundError
from .spec import TRANSFORMERS_MARKER

if TYPE_CHECKING:  # pragma: no cover
    from .spec import ModelSpec

logger = logging.getLogger(__name__)

SAM_CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything/{file}"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
ORIGINAL_SUFFIXES = (".pth", ".pt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
# The weight file a part of a diffusers pipeline loads, in the order diffusers / transformers prefer them
# (variants such as *.fp16.safetensors or *.non_ema.bin are not read, so they are neither required nor hashed).
PART_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors",
                     "diffusion_pytorch_model.bin", "pytorch_model.bin")


@dataclass(frozen=True)
class WeightsLocation:
    """Where a model's weights are.

    Attributes:
        kind: "builtin" (tiny seeded or weight-free), "folder" (transformers format or a diffusers pipeline, also
            a hub snapshot), or "original" (Meta's .pth checkpoint).
        path: the folder or file; None for builtin.
        files: the weight files to hash (of a pipeline: those of every part, in the spec's part order).
        hub_id: the hub id when the folder is a hub-cache snapshot.
    """

    kind: str
    path: Path | None = None
    files: tuple[Path, ...] = ()
    hub_id: str | None = None

    def describe(self) -> str:
        """Short human description for `cryoseg models` and logs."""
        if self.kind == "builtin":
            return "built-in"
        if self.hub_id:
            return f"hub cache: {self.path}"
        return str(self.path)


def cryoseg_home() -> Path:
    """`$CRYOSEG_HOME`, default `~/.cache/cryoseg` (read at call time)."""
    return Path(os.environ.get("CRYOSEG_HOME") or Path.home() / ".cache" / "cryoseg").expanduser()


def checkpoint_dir() -> Path:
    """Default folder for original checkpoint files."""
    return cryoseg_home() / "checkpoints"


def hub_cache_dir() -> Path:
    """The hub cache folder, following huggingface_hub's environment variables (read at call time)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    try:
        from huggingface_hub import constants
    except ImportError:  # the base install: huggingface_hub's documented default
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "huggingface" / "hub"
    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value."""
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_hub_id(text: str) -> bool:
    """'org/name' with hub-legal characters, and not a path-like string."""
    return bool(_HUB_ID.match(text)) and not text.endswith(ORIGINAL_SUFFIXES + WEIGHT_SUFFIXES)


def weight_files(folder: Path) -> tuple[Path, ...]:
    """The weight files (*.safetensors, *.bin) directly in `folder`, sorted."""
    return tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)))


def part_weight_files(part: Path) -> tuple[Path, ...]:
    """The weight files one part of a diffusers pipeline (e.g. `folder/unet`) loads: the first of
    `PART_WEIGHT_NAMES` present, else the shards its `*.index.json` lists; () if none."""
    if not part.is_dir():
        return ()
    for name in PART_WEIGHT_NAMES:
        if (part / name).is_file():
            return (part / name,)
    for index in sorted(part.glob("*.index.json")):
        try:
            shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        except (OSError, ValueError, AttributeError):
            continue
        if shards and all((part / shard).is_file() for shard in shards):
            return tuple(part / shard for shard in shards)
    return ()


def layout_files(folder: Path, parts: tuple[str, ...] = ()) -> tuple[Path, ...]:
    """The weight files of a model folder laid out as a spec says: those directly in `folder` when `parts` is
    empty, else those of every part subfolder (each with its config.json); () if any part lacks them."""
    if not parts:
        return weight_files(folder)
    files: list[Path] = []
    for part in parts:
        found = part_weight_files(folder / part)
        if not found or not (folder / part / "config.json").is_file():
            return ()
        files += found
    return tuple(files)


def find_in_hub_cache(hub_id: str, marker: str = TRANSFORMERS_MARKER, parts: tuple[str, ...] = ()) -> Path | None:
    """The snapshot folder of `hub_id` in the hub cache if it holds `marker` (config.json, or model_index.json
    for a diffusers pipeline) and the weights `layout_files(folder, parts)` finds, else None.

    Only reads the cache: no network.
    """
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(hub_id, marker, cache_dir=str(hub_cache_dir()))
    except ValueError as exc:  # HFValidationError: not a valid repo id, so it cannot be in the cache
        logger.debug("hub cache lookup of %s failed: %s", hub_id, exc)
        return None
    if not isinstance(found, str):
        return None
    folder = Path(found).parent
    return folder if layout_files(folder, parts) else None


def _find_cached(spec: ModelSpec, hub_id: str) -> WeightsLocation | None:
    """`hub_id`'s snapshot in the hub cache laid out as `spec` expects, as a location; None if absent."""
    folder = find_in_hub_cache(hub_id, spec.weights_marker, spec.weights_parts)
    if folder is None:
        return None
    return WeightsLocation("folder", folder, layout_files(folder, spec.weights_parts), hub_id)


def hub_cache_path(hub_id: str) -> Path:
    """Where `hub_id` would sit in the hub cache (for messages)."""
    return hub_cache_dir() / ("models--" + hub_id.replace("/", "--"))


def how_to_get(spec: ModelSpec) -> str:
    """One clause telling the user how to obtain the weights of `spec`."""
    ways = []
    if spec.hub_id and spec.weights_parts:  # only the files loaded, not every variant a pipeline repo carries
        parts = [f'"{p}/*model.safetensors"' for p in spec.weights_parts]
        include = " ".join([spec.weights_marker, '"*/*.json"', *parts])
        ways.append(f"run `hf download {spec.hub_id} --include {include}` on a machine with internet")
    elif spec.hub_id:
        ways.append(f"run `hf download {spec.hub_id}` on a machine with internet (or pass download=True)")
    if spec.original_checkpoint:
        url = SAM_CHECKPOINT_URL.format(file=spec.original_checkpoint)
        ways.append(f"put {spec.original_checkpoint} ({url}) in {checkpoint_dir()}")
    if spec.packaged:
        command = "segmenter" if spec.kind == "segmenter" else "features"
        ways.append(f"train them with `cryoseg train {command} -o DIR` and pass weights=DIR/model")
    what = "diffusers pipeline folder|hub id" if spec.weights_parts else "folder|file.pth|hub id"
    ways.append(("or " if ways else "") + f"pass weights=<{what}>")
    return "; ".join(ways)


def places_looked(spec: ModelSpec) -> list[str]:
    """Where `locate_weights(spec)` looks when no weights are given (for messages and `cryoseg models`)."""
    places = []
    if spec.packaged:
        from .compact import PACKAGED

        places.append(str(PACKAGED / spec.name))
    if spec.hub_id:
        places.append(f"hub cache {hub_cache_path(spec.hub_id)}")
    if spec.original_checkpoint:
        places.append(str(checkpoint_dir() / spec.original_checkpoint))
    return places


def _not_found(spec: ModelSpec, looked: list[str], detail: str = "weights not found") -> WeightsNotFoundError:
    where = ", ".join(looked) if looked else "nowhere (no hub id or checkpoint file is registered)"
    return WeightsNotFoundError(f"model '{spec.name}': {detail}; looked in {where}; to get them: {how_to_get(spec)}")


def locate_weights(
    spec: ModelSpec, weights: str | os.PathLike | None = None, download: bool = False
) -> WeightsLocation:
    """Find the weights of `spec`, from `weights` if given, else from the default places. Raises
    `WeightsNotFoundError` (nothing found), `InputError` (a file of the wrong kind)."""
    if spec.builtin:
        if weights is None:
            return WeightsLocation("builtin")
        if spec.impl is not None:
            raise InputError(f"model '{spec.name}' is weight-free and takes no weights (got {weights})")
    if weights is not None:
        return _locate_given(spec, weights, download)
    looked = places_looked(spec)
    if spec.packaged:
        from .compact import packaged_folder

        folder = packaged_folder(spec.name)  # checked against its recorded sha256
        if folder is not None:
            return WeightsLocation("folder", folder, weight_files(folder))
    if spec.hub_id:
        cached = _find_cached(spec, spec.hub_id)
        if cached is not None:
            return cached
    if spec.original_checkpoint:
        path = checkpoint_dir() / spec.original_checkpoint
        if path.is_file():
            return WeightsLocation("original", path, (path,))
    if download and spec.hub_id:
        return _download(spec, spec.hub_id, looked)
    raise _not_found(spec, looked)


def _locate_given(spec: ModelSpec, weights: str | os.PathLike, download: bool) -> WeightsLocation:
    text = os.fspath(weights)
    path = Path(text).expanduser()
    if not path.exists() and path.name == text and text.endswith(ORIGINAL_SUFFIXES):
        path = checkpoint_dir() / text  # a bare original file name: look in the default checkpoint folder
    if path.is_dir():
        if spec.weights_parts:
            return WeightsLocation("folder", path, _pipeline_files(spec, path))
        if not (path / "config.json").is_file():
            raise _not_found(spec, [str(path)], f"folder {path} has no config.json (not a transformers model folder)")
        files = weight_files(path)
        if not files:
            raise _not_found(spec, [str(path)], f"folder {path} has no *.safetensors or *.bin weight files")
        return WeightsLocation("folder", path, files)
    if path.is_file():
        if spec.weights_parts:
            raise InputError(f"weights for model '{spec.name}' must be a diffusers pipeline folder "
                             f"({spec.weights_marker} and {', '.join(p + '/' for p in spec.weights_parts)}), "
                             f"not the file {path}")
        if not path.name.endswith(ORIGINAL_SUFFIXES):
            raise InputError(f"weights file {path} for model '{spec.name}' is not an original .pth checkpoint; "
                             "pass the folder that holds config.json and the weights instead")
        return WeightsLocation("original", path, (path,))
    if looks_like_hub_id(text):
        cached = _find_cached(spec, text)
        if cached is not None:
            return cached
        if download:
            return _download(spec, text, [f"hub cache {hub_cache_path(text)}"])
        raise _not_found(spec, [f"hub cache {hub_cache_path(text)}"],
                         f"hub model {text} is not in the local cache (downloads are off)")
    raise _not_found(spec, [str(path)], f"no file or folder {path}")


def _pipeline_files(spec: ModelSpec, path: Path) -> tuple[Path, ...]:
    """The weight files of a user-given diffusers pipeline folder, or one `WeightsNotFoundError` naming the first
    thing missing (the marker file, a part subfolder, its config.json or its weights)."""
    parts = ", ".join(p + "/" for p in spec.weights_parts)
    layout = f"a diffusers pipeline folder holds {spec.weights_marker} and {parts}"
    if not (path / spec.weights_marker).is_file():
        raise _not_found(spec, [str(path)], f"folder {path} has no {spec.weights_marker} ({layout})")
    for part in spec.weights_parts:
        sub = path / part
        if not sub.is_dir():
            raise _not_found(spec, [str(path)], f"folder {path} has no {part}/ subfolder ({layout})")
        if not (sub / "config.json").is_file():
            raise _not_found(spec, [str(sub)], f"folder {sub} has no config.json ({layout})")
        if not part_weight_files(sub):
            raise _not_found(spec, [str(sub)], f"folder {sub} has no weights ({' or '.join(PART_WEIGHT_NAMES)})")
    return layout_files(path, spec.weights_parts)


def _download_patterns(spec: ModelSpec) -> list[list[str]]:
    """allow_patterns for `snapshot_download`, safetensors first (older repos only carry *.bin). A pipeline gets
    its root json, the scheduler and tokenizer configs and, per part, the config and the one weight file loaded
    (never the fp16 / non-EMA variants that sit beside it)."""
    if not spec.weights_parts:
        return [["*.json", "*.safetensors"], ["*.json", "pytorch_model*.bin"]]
    base = [spec.weights_marker, "scheduler/*.json", "tokenizer/*"] + [f"{p}/config.json" for p in spec.weights_parts]
    return [base + [f"{p}/{name}" for p in spec.weights_parts for name in names]
            for names in (PART_WEIGHT_NAMES[:2], PART_WEIGHT_NAMES[2:])]


def _download(spec: ModelSpec, hub_id: str, looked: list[str]) -> WeightsLocation:
    """Explicitly requested download of `hub_id` into the standard hub cache."""
    if hub_offline():
        raise _not_found(spec, looked, f"hub model {hub_id} is not cached and HF_HUB_OFFLINE is set")
    from huggingface_hub import snapshot_download

    logger.info("downloading %s into %s", hub_id, hub_cache_dir())
    folder = None
    for patterns in _download_patterns(spec):
        try:
            folder = Path(snapshot_download(hub_id, cache_dir=str(hub_cache_dir()), allow_patterns=patterns))
        except Exception as exc:
            raise _not_found(spec, looked, f"download of {hub_id} failed ({type(exc).__name__}: {exc})") from exc
        files = layout_files(folder, spec.weights_parts)
        if files:
            return WeightsLocation("folder", folder, files, hub_id)
    raise _not_found(spec, looked, f"hub model {hub_id} has no safetensors or pytorch_model.bin weights")


# --- hashing -----------------------------------------------------------------------------------------------

_memo: dict[tuple[str, int, int], str] = {}


def _hash_cache_file() -> Path:
    return cryoseg_home() / "weights-sha256.json"


def file_sha256(path: Path) -> str:
    """sha256 of one file's content, cached in memory and in `$CRYOSEG_HOME/weights-sha256.json` by
    (resolved path, size, mtime) so multi-GB checkpoints are hashed once."""
    real = Path(path).resolve()
    try:
        st = real.stat()
    except OSError as exc:
        raise CorruptFileError(f"cannot read weights file {path}: {exc}") from exc
    key = (str(real), st.st_size, st.st_mtime_ns)
    if key in _memo:
        return _memo[key]
    cache_file = _hash_cache_file()
    disk: dict[str, dict] = {}
    try:
        disk = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        disk = {}
    entry = disk.get(key[0])
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        _memo[key] = str(entry["sha256"])
        return _memo[key]
    digest = hashlib.sha256()
    with open(real, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    value = digest.hexdigest()
    _memo[key] = value
    disk[key[0]] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": value}
    try:
        from ..io.atomic import atomic_path

        with atomic_path(cache_file) as tmp:
            tmp.write_text(json.dumps(disk, indent=0, sort_keys=True))
    except OSError as exc:  # a read-only home must not stop inference
        logger.debug("could not update the weights hash cache %s: %s", cache_file, exc)
    return value


def weights_hash(location: WeightsLocation) -> str:
    """'sha256:<hex>' over the weight files of `location` (names and contents); '' for builtin."""
    if not location.files:
        return ""
    if len(location.files) == 1:
        return "sha256:" + file_sha256(location.files[0])
    digest = hashlib.sha256()
    for path in location.files:
        digest.update(f"{path.name}:{file_sha256(path)}\n".encode())
    return "sha256:" + digest.hexdigest()
