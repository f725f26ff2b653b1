"""Hostile input through the CLI: each case gets one line, exit code 2, and leaves every file as it was.

The cases are those an outside run of hostile inputs found; `cli_refuses` (conftest) checks the line, the exit code
and that the folder holding inputs and outputs is byte for byte unchanged.
"""

from __future__ import annotations

import os
import shutil
import struct

import mrcfile
import numpy as np
import pytest
import tifffile

from cryoseg.cli.main import main
from cryoseg.io import Volume, write_volume

SHAPE = (20, 24, 28)


@pytest.fixture
def work(tmp_path):
    """A folder with a small tomogram (10 Å voxels), a label map of it and a picks file."""
    rng = np.random.default_rng(0)
    data = rng.normal(size=SHAPE).astype(np.float32)
    data[8:13, 10:15, 12:17] += 4.0  # one blob to prompt
    write_volume(Volume(data, voxel_size=10.0), tmp_path / "tomo.mrc")
    write_volume(Volume((data > 2).astype(np.int8), voxel_size=10.0), tmp_path / "labels.mrc")
    (tmp_path / "picks.csv").write_text("z,y,x\n10,12,14\n")
    return tmp_path


def _mrc_with_header_int(folder, name, offset, value):
    raw = bytearray((folder / "tomo.mrc").read_bytes())
    raw[offset:offset + 4] = struct.pack("<i", value)
    (folder / name).write_bytes(bytes(raw))
    return folder / name


@pytest.mark.parametrize("field, offset, value", [("nx", 0, -5), ("nx", 0, 0), ("nz", 8, -3), ("ny", 4, 0)])
@pytest.mark.parametrize("command", ["info", "pick", "preview", "evaluate"])
def test_mrc_header_with_a_size_that_is_not_positive(work, cli_refuses, field, offset, value, command):
    bad = _mrc_with_header_int(work, "bad.mrc", offset, value)
    argv = {"info": ["info", bad], "pick": ["pick", bad, "--prompt", "1,1,1", "-o", work / "out"],
            "preview": ["preview", bad, "-o", work / "p.png"], "evaluate": ["evaluate", bad, work / "labels.mrc"]}
    line = cli_refuses(argv[command], "bad.mrc: not a readable MRC file (corrupt header: nx, ny, nz = ", work)
    assert str(value) in line and "must be positive" in line


def test_simulate_a_volume_too_large_for_memory(tmp_path, cli_refuses):
    line = cli_refuses(["simulate", "--shape", "100000,100000,100000", "-o", tmp_path / "sim"],
                       "simulating 100000x100000x100000 voxels needs about ", tmp_path)
    assert "TiB of memory but" in line and "choose a smaller --shape" in line


@pytest.mark.parametrize("command", ["info", "preview"])
def test_complex_tiff(work, cli_refuses, command):
    tifffile.imwrite(work / "c.tif", (np.ones(SHAPE) + 1j).astype(np.complex64), photometric="minisblack")
    argv = ["info", work / "c.tif"] if command == "info" else ["preview", work / "c.tif", "-o", work / "c.png"]
    cli_refuses(argv, "c.tif: holds complex64 values; cryoseg reads real-valued volumes only", work)


@pytest.mark.parametrize("option, message", [
    (["--device", "tpu"], "unknown device 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
    (["--device", "cuda"], "device 'cuda' requested but CUDA is not available on this machine"),
    (["--device", "cuda:x"], "unknown device 'cuda:x'"),
    (["--dtype", "fp8"], "unknown precision 'fp8'; use fp32, fp16 or bf16"),
    (["--dtype", "fp16"], "precision 'fp16' needs a GPU (cuda or mps)"),
    (["--batch-size", "0"], "batch size must be a positive integer, got 0"),
    (["--max-slices", "0"], "max_slices must be at least 1"),
])
def test_device_precision_and_counts_are_checked_for_weight_free_models(work, cli_refuses, monkeypatch, option,
                                                                         message):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this test means a machine without a GPU
    cli_refuses(["pick", work / "tomo.mrc", "--prompt", "10,12,14", "-o", work / "out", *option], message, work)


def test_a_negative_point_on_a_prompt(work, cli_refuses):
    cli_refuses(["segment", work / "tomo.mrc", "--prompt", "10,12,14", "--negative", "10,12.2,14", "-o", work / "o"],
                "negative point 1 is on the voxel of prompt 1 at (z, y, x) = (10, 12, 14)", work)


@pytest.mark.parametrize("value, shown", [(0.0, "0, 0, 0 Å"), (np.nan, "nan"), (-2.0, "-2"), (np.inf, "inf")])
@pytest.mark.parametrize("command", ["segment", "pick"])
def test_bad_header_voxel_size_is_refused_before_any_work(work, cli_refuses, value, shown, command):
    with mrcfile.new(work / "vs.mrc") as mrc:
        mrc.set_data(np.asarray(mrcfile.read(work / "tomo.mrc")))
        mrc.voxel_size = value
    line = cli_refuses([command, work / "vs.mrc", "--prompt", "10,12,14", "-o", work / "out"], "vs.mrc: ", work)
    assert shown in line and "pass --voxel-size" in line
    # the option the message names does work
    assert main([command, str(work / "vs.mrc"), "--prompt", "10,12,14", "-o", str(work / "out"),
                 "--voxel-size", "10"]) == 0
    assert (work / "out" / "report.json").is_file()


@pytest.mark.parametrize("what", ["volume", "prompts", "truth"])
def test_a_named_pipe_is_refused_not_read(work, cli_refuses, what):
    pipe = work / ("pipe.mrc" if what == "volume" else "pipe.csv")
    os.mkfifo(pipe)  # opening it for reading would block forever
    argv = {"volume": ["info", pipe],
            "prompts": ["pick", work / "tomo.mrc", "--prompts", pipe, "-o", work / "out"],
            "truth": ["evaluate", work / "picks.csv", pipe]}[what]
    cli_refuses(argv, f"{pipe}: is a named pipe, not a regular file", work)


def test_an_input_inside_the_output_folder_is_refused_before_any_work(work, cli_refuses):
    run = work / "out" / "x"
    run.mkdir(parents=True)
    shutil.copy(work / "tomo.mrc", run / "tomogram.mrc")
    (run / "particles.csv").write_text("z,y,x\n10,12,14\n")
    cli_refuses(["pick", run / "tomogram.mrc", "--prompts", run / "particles.csv", "-o", run, "--overwrite"],
                f"input {run / 'tomogram.mrc'} lies inside the output folder {run}", work)


def test_convert_checks_every_target_first(work, cli_refuses):
    dst = work / "p.star"
    (work / "p.star.report.json").write_text("{}")  # the record exists, the output not yet
    cli_refuses(["convert", work / "picks.csv", dst], "p.star.report.json exists; pass --overwrite", work)
    (work / "p.star.report.json").unlink()
    os.link(work / "picks.csv", work / "same.csv")  # the output is the input through a hard link
    cli_refuses(["convert", work / "picks.csv", work / "same.csv", "--overwrite"],
                "refusing to overwrite input file", work)
    assert main(["-q", "convert", str(work / "picks.csv"), str(dst)]) == 0
    cli_refuses(["convert", work / "picks.csv", dst], "p.star exists; pass --overwrite to replace it", work)
    assert main(["-q", "convert", str(work / "picks.csv"), str(dst), "--overwrite"]) == 0


def test_preview_and_evaluate_refuse_to_replace_an_output(work, cli_refuses):
    (work / "p.png").write_bytes(b"mine")
    cli_refuses(["preview", work / "tomo.mrc", "-o", work / "p.png"], "p.png exists; pass --overwrite", work)
    assert main(["-q", "preview", str(work / "tomo.mrc"), "-o", str(work / "p.png"), "--overwrite"]) == 0
    assert (work / "p.png").read_bytes().startswith(b"\x89PNG")
    (work / "e.json").write_text("{}")
    cli_refuses(["evaluate", work / "picks.csv", work / "picks.csv", "-o", work / "e.json"],
                "e.json exists; pass --overwrite", work)
    (work / "dir.json").mkdir()
    cli_refuses(["evaluate", work / "picks.csv", work / "picks.csv", "-o", work / "dir.json", "--overwrite"],
                "output " + str(work / "dir.json") + " is a folder; give a file name", work)


@pytest.mark.parametrize("suffix", [".csv", ".star", ".json", ".ndjson"])
def test_zero_byte_coordinate_files_are_refused_alike(work, cli_refuses, suffix):
    (work / f"empty{suffix}").write_bytes(b"")
    cli_refuses(["convert", work / f"empty{suffix}", work / "o.csv"], f"empty{suffix}: the file is empty (0 bytes)",
                work)


@pytest.mark.parametrize("argv, message", [
    (["pick", "--foo"], "No such option: --foo"),
    (["nosuch"], "No such command 'nosuch'"),
    (["info"], "Missing argument 'file'"),
    (["pick", "x.mrc", "-o", "y", "--top-k", "abc"], "Invalid value for '--top-k'"),
])
def test_usage_errors_are_one_line(tmp_path, cli_refuses, argv, message):
    line = cli_refuses(argv, message, tmp_path)
    assert "--help`" in line


def test_library_messages_with_newlines_stay_on_one_line(work, cli_refuses):
    (work / "bad.csv").write_text("z,y,x\n1,2,3\n1,2,3,4,5\n")  # pandas: "... saw 5\n"
    cli_refuses(["convert", work / "bad.csv", work / "o.star"], "bad.csv: not a readable CSV table", work)
    (work / "long.csv").write_text("z,y,x\n1,2,3,4,5\n")  # pandas would quietly take two columns as an index
    cli_refuses(["convert", work / "long.csv", work / "o.star"], "long.csv: not a readable CSV table", work)


def test_tifffile_log_lines_do_not_reach_the_terminal(work, capsys):
    tifffile.imwrite(work / "t.tif", np.zeros((3, 8, 8), np.uint8), photometric="minisblack")
    raw = bytearray((work / "t.tif").read_bytes())
    first = struct.unpack("<I", raw[4:8])[0]
    next_offset = first + 2 + 12 * struct.unpack("<H", raw[first:first + 2])[0]
    raw[next_offset:next_offset + 4] = struct.pack("<I", 10**8)  # the second page lies past the end
    (work / "t.tif").write_bytes(bytes(raw))
    main(["info", str(work / "t.tif")])
    err = capsys.readouterr().err
    assert "invalid page offset" not in err and err.count("\n") <= 1, err


def test_a_hundred_identical_prompts_give_one_warning(work, capsys):
    argv = ["segment", str(work / "tomo.mrc"), "-o", str(work / "out")]
    for _ in range(100):
        argv += ["--prompt", "10,12,14"]
    assert main(argv) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("WARNING")]
    assert warnings == ["WARNING: 99 of 100 prompts repeat the voxel of an earlier prompt; each voxel is used once"]


def test_models_extra_is_named_when_the_backend_is_missing(work, cli_refuses, monkeypatch, capsys):
    """The base install (README command 1) has neither torch nor transformers nor huggingface_hub."""
    import sys

    for name in ("torch", "transformers", "safetensors", "huggingface_hub"):
        monkeypatch.setitem(sys.modules, name, None)  # `import torch` now fails, as where it is not installed
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    assert rows["sam-vit-b"] == ["segmenter", "sam", "no", "backend", "apache-2.0"]
    assert rows["tiny-sam"][2:4] == ["no", "backend"] and rows["classical"][2] == "built-in"
    assert "pip install 'cryoseg[models]'" in " ".join(out.split())
    hint = "pip install 'cryoseg[models]'"
    base = ["pick", work / "tomo.mrc", "--prompt", "10,12,14", "-o", work / "out"]
    for option, message in ((["--segmenter", "sam-vit-b"], "model 'sam-vit-b' needs torch"),
                            (["--segmenter", "tiny-sam"], "model 'tiny-sam' needs torch"),
                            (["--features", "dinov2-vitb14"], "model 'dinov2-vitb14' needs torch"),
                            (["--features", "tiny-dinov2"], "model 'tiny-dinov2' needs torch"),
                            (["--segmenter", "sam-vit-b", "--weights", work / "x.pth"], "model 'sam-vit-b' needs"),
                            (["--device", "cuda"], "device 'cuda' needs torch")):
        assert hint in cli_refuses(base + option, message, work)


def test_an_unwritable_output_is_refused_before_any_work(work, cli_refuses):
    cli_refuses(["pick", work / "tomo.mrc", "--prompt", "10,12,14", "-o", work / "picks.csv" / "out"],
                "picks.csv is not a folder", work)
    # /proc (Linux, where CI runs): a folder that not even root can create files in
    cli_refuses(["pick", work / "tomo.mrc", "--prompt", "10,12,14", "-o", "/proc/cryoseg-out"],
                "cannot write /proc/cryoseg-out: /proc is not writable", work)
    cli_refuses(["preview", work / "tomo.mrc", "-o", "/proc/p.png"], "cannot write /proc/p.png", work)


def test_a_volume_one_voxel_thick(work, cli_refuses):
    write_volume(Volume(np.ones((1, 24, 28), np.float32), voxel_size=10.0), work / "flat.mrc")
    cli_refuses(["pick", work / "flat.mrc", "--prompt", "0,12,14", "-o", work / "out"],
                "flat.mrc: a volume of shape (1, 24, 28) (z, y, x) is one voxel thick", work)
