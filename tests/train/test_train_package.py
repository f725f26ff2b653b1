"""`import cryoseg.train` is light (the CLI imports it), and every export resolves to its submodule's object."""

from __future__ import annotations

import subprocess
import sys

import cryoseg.train as train


def test_import_loads_neither_torch_nor_pillow():
    code = ("import sys, cryoseg.train as t; t.TrainConfig(); t.split(4, 0.5); t.Dihedral(1).apply([[1, 2]]); "
            "t.History(); print(sorted(m for m in ('torch', 'PIL', 'safetensors') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_export_resolves():
    assert sorted(dir(train)) == sorted(train.__all__)
    for name in train.__all__:
        obj = getattr(train, name)
        assert obj is not None
        if hasattr(obj, "__module__") and not isinstance(obj, (int, str)):
            assert obj.__module__.startswith("cryoseg.train."), name
