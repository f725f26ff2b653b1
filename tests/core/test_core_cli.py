"""The CLI shell: exit codes and one-line errors."""

from __future__ import annotations

import pytest

from cryoseg.cli.main import main
from cryoseg.cli.parse import parse_numbers, parse_point, parse_shape, parse_voxel_size
from cryoseg.errors import InputError
from cryoseg.eval import DEFAULT_IOU_THRESHOLD, PickingConfig
from cryoseg.synth.config import REFERENCE_COUNTS
from cryoseg.viz import PreviewConfig


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "cryoseg" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "no-such-command" in capsys.readouterr().err


# --- the one number parser of the CLI ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, kwargs, expected", [
    ("64,128,128", {"counts": (3,)}, (64.0, 128.0, 128.0)),
    ("64 128  128", {"counts": (3,)}, (64.0, 128.0, 128.0)),  # spaces separate too
    ("-2.5", {"counts": (1, 2)}, (-2.5,)),
    ("8,16,32", {"counts": (3,), "integer": True, "positive": True}, (8, 16, 32)),
])
def test_parse_numbers_accepts(text, kwargs, expected):
    values = parse_numbers(text, "--opt", **kwargs)
    assert values == expected and [type(v) for v in values] == [type(v) for v in expected]


@pytest.mark.parametrize("text, kwargs, message", [
    ("1,2", {"counts": (3,)}, "--opt must be three comma-separated numbers, got '1,2'"),
    ("a,b,c", {"counts": (3,)}, "--opt must be three comma-separated numbers, got 'a,b,c'"),
    ("1,2,3", {"counts": (1, 2), "meaning": "in degrees"},
     "--opt must be one or two comma-separated numbers in degrees, got '1,2,3'"),
    ("8.0,16,32", {"counts": (3,), "integer": True}, "--opt must be three comma-separated integers, got"),
    ("0,16,32", {"counts": (3,), "integer": True, "positive": True, "meaning": "Z,Y,X"},
     "--opt must be three comma-separated positive integers Z,Y,X, got '0,16,32'"),
    ("-1", {"counts": (1,), "positive": True}, "--opt must be one positive number, got '-1'"),
    ("1", {"counts": (3,), "expected": "needs 3 comma-separated numbers"}, "--opt needs 3 comma-separated numbers, "
                                                                          "got '1'"),
])
def test_parse_numbers_refuses_naming_the_option(text, kwargs, message):
    with pytest.raises(InputError) as info:
        parse_numbers(text, "--opt", **kwargs)
    assert str(info.value).startswith(message)


def test_named_parsers():
    assert parse_voxel_size("10") == 10.0 and parse_voxel_size("20,10,5") == (20.0, 10.0, 5.0)
    assert parse_point("1.5,2,3") == (1.5, 2.0, 3.0)
    assert parse_shape("4,5,6") == (4, 5, 6)
    with pytest.raises(InputError, match=r"--voxel-size must be one or three comma-separated numbers \(z,y,x\) in Å"):
        parse_voxel_size("1,2")
    with pytest.raises(InputError, match="--prompt must be three comma-separated numbers z,y,x in voxels"):
        parse_point("1,2", "--prompt")
    with pytest.raises(InputError, match="--shape must be three comma-separated positive integers Z,Y,X"):
        parse_shape("4,5,-6")


@pytest.mark.parametrize("command, option, default", [
    ("evaluate", "--tolerance", f"default {PickingConfig().tolerance:g};"),
    ("evaluate", "--unit", f"default {PickingConfig().tolerance_unit!r}"),
    ("evaluate", "--iou-threshold", f"default {DEFAULT_IOU_THRESHOLD:g}"),
    ("preview", "--pick-radius", f"default {PreviewConfig().pick_radius:g}"),
    ("simulate", "--particles", f"default {REFERENCE_COUNTS['particles']};"),
    ("simulate", "--vesicles", f"default {REFERENCE_COUNTS['vesicles']};"),
    ("simulate", "--filaments", f"default {REFERENCE_COUNTS['filaments']};"),
])
def test_help_quotes_the_library_defaults(command, option, default):
    from typer.main import get_command

    from cryoseg.cli.main import app

    params = {name: p for p in get_command(app).commands[command].params for name in p.opts}
    assert default in params[option].help
