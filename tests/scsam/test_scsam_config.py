"""ScSAMConfig: defaults, validation (one-line InputErrors), and the to_dict / from_dict round trip."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cryoseg.errors import InputError
from cryoseg.scsam import ScSAMConfig


def test_defaults_and_derived_names():
    cfg = ScSAMConfig(class_names=["mitochondrion", "granule"])
    assert cfg.class_names == ("mitochondrion", "granule")  # a list becomes a tuple (hashable, frozen)
    assert cfg.num_classes == 2
    assert cfg.label_names == ("background", "mitochondrion", "granule")
    assert (cfg.use_sam, cfg.use_mae, cfg.sam_dim, cfg.embed_dim, cfg.grid) == (True, True, 256, 256, (64, 64))
    assert cfg.n_sparse == 4
    with pytest.raises(AttributeError):
        cfg.n_sparse = 2  # frozen


def test_round_trip_through_json():
    cfg = ScSAMConfig(class_names=("a", "b", "c"), use_sam=False, mae_dim=32, embed_dim=16, grid=[5, 7],
                      n_sparse=2, ce_weight=0.5, dice_weight=2, alignment_weight=0.0, prototype_weight=0.3,
                      prototype_margin=-0.2)
    assert cfg.grid == (5, 7)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["grid"] == [5, 7] and data["class_names"] == ["a", "b", "c"]
    back = ScSAMConfig.from_dict(data)
    assert back == cfg
    assert isinstance(back.dice_weight, float)


@pytest.mark.parametrize("kwargs, message", [
    (dict(class_names=[]), "at least one foreground class"),
    (dict(class_names="mito"), "list of class names"),
    (dict(class_names=["mito", ""]), "non-empty strings"),
    (dict(class_names=["mito", 3]), "non-empty strings"),
    (dict(class_names=["Background"]), "reserved"),
    (dict(class_names=["a", "a"]), "unique"),
    (dict(class_names=["a"], use_sam=False, use_mae=False), "at least one encoder"),
    (dict(class_names=["a"], use_mae="yes"), "use_mae must be true or false"),
    (dict(class_names=["a"], embed_dim=0), "embed_dim must be a positive integer"),
    (dict(class_names=["a"], sam_dim=2.5), "sam_dim must be a positive integer"),
    (dict(class_names=["a"], mae_dim=True), "mae_dim must be a positive integer"),
    (dict(class_names=["a"], grid=(8,)), "grid must be (h, w)"),
    (dict(class_names=["a"], grid=(0, 8)), "grid height must be a positive integer"),
    (dict(class_names=["a"], grid=(2, 2), n_sparse=5), "n_sparse must be an integer in [0, 4]"),
    (dict(class_names=["a"], n_sparse=-1), "n_sparse"),
    (dict(class_names=["a"], dice_weight=-1.0), "dice_weight must be a finite number >= 0"),
    (dict(class_names=["a"], alignment_weight=float("nan")), "alignment_weight must be a finite number"),
    (dict(class_names=["a"], ce_weight=0, dice_weight=0), "nothing would train"),
    (dict(class_names=["a"], prototype_margin=1.0), "prototype_margin"),
])
def test_bad_settings_are_one_line_input_errors(kwargs, message):
    with pytest.raises(InputError) as info:
        ScSAMConfig(**kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_from_dict_refuses_unknown_or_missing_keys():
    data = ScSAMConfig(class_names=["a"]).to_dict()
    with pytest.raises(InputError, match="unknown ScSAM config keys \\['colour'\\]"):
        ScSAMConfig.from_dict({**data, "colour": "red"})
    data.pop("class_names")
    with pytest.raises(InputError, match="no class_names"):
        ScSAMConfig.from_dict(data)
    with pytest.raises(InputError, match="must be a mapping"):
        ScSAMConfig.from_dict(["a"])


def test_package_import_and_config_do_not_import_torch():
    code = ("import sys, cryoseg.scsam as s; c = s.ScSAMConfig(class_names=['a']); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'build_head' in dir(s) and 'scsam_loss' in s.__all__; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
