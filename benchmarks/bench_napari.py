"""How long from a click in napari to the particle's 3D mask on screen, with the default models?

A real napari viewer (under Xvfb here) holds a simulated tomogram (10 Å/voxel; 4v4r, 3j9i, 1bxn) and the "Segment and
pick" widget. A click is a positive point added to the prompts layer, exactly as the mouse adds it; the time runs
from that point to the labels layer showing the mask with the event loop drained (the worker thread's result
handed to the GUI thread, the layer updated and the canvas repainted). The first click on a tomogram embeds slices
for the first time; each later click is on another ribosome of the same tomogram (a new instance: only its slices
not yet embedded cost model work). Also timed: the first "Pick all of this kind" and a rerun after deleting a pick
(the deleted pick becomes a negative exemplar). With `--screenshot`, the viewer after the pick is saved as a PNG.

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/bench_napari.py --clicks 6 \
        --screenshot benchmarks/napari_pick.png --out benchmarks/bench_napari.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_matching import SMALL_SET, inner_prompt, load_or_simulate, load_truth  # noqa: E402


def wait(widget) -> float:
    """Seconds until the widget's work is done and the GUI has processed everything it caused."""
    from qtpy.QtWidgets import QApplication

    start = time.perf_counter()
    while widget.busy:
        QApplication.processEvents()
        time.sleep(0.002)
    QApplication.processEvents()
    return time.perf_counter() - start


def run_case(folder: Path, shape: tuple[int, int, int], clicks: int, screenshot: Path | None) -> dict:
    import napari

    from cryoseg.io.volumes import read_volume
    from cryoseg.napari.layers import volume_layer
    from cryoseg.napari.pick_widget import PICKS, POSITIVE, PickWidget

    coords, classes, names, radius = load_truth(folder)
    ribosome = next(c for c, n in names.items() if n == "4v4r")
    rng = np.random.default_rng(0)
    pool = coords[classes == ribosome]
    order = [inner_prompt(pool, shape, radius[ribosome], rng)[0]]
    inner = [c for c in pool if np.all(c >= radius[ribosome]) and np.all(c <= np.array(shape) - 1 - radius[ribosome])]
    order += [c for c in inner if not np.allclose(c, order[0])][:clicks - 1]

    viewer = napari.Viewer(show=True)
    data, kwargs, _ = volume_layer(read_volume(folder / "tomogram.mrc"), "tomogram")
    viewer.add_image(data, **kwargs)
    widget = PickWidget(viewer)
    viewer.window.add_dock_widget(widget, name="cryoseg: segment and pick")
    widget.cache.value = folder / "napari-cache"
    times = []
    for point in order:
        viewer.dims.set_point(0, point[0] * kwargs["scale"][0])  # the user looks at the particle's slice
        start = time.perf_counter()
        widget.add_prompts(point, POSITIVE)
        wait(widget)
        times.append(time.perf_counter() - start)
        assert widget.tasks.last_error is None, widget.tasks.status.value
    widget.follow_clicks.value = False
    prompts = viewer.layers["cryoseg prompts"]
    prompts.data = prompts.data[:1]  # the pick starts from the first click alone
    start = time.perf_counter()
    widget.pick_button.clicked()
    wait(widget)
    pick_s = time.perf_counter() - start
    n_picks = len(viewer.layers[PICKS].data)
    widget.follow_clicks.value = True
    picks = viewer.layers[PICKS]
    picks.selected_data = {int(np.argmin(picks.features["score"]))}
    start = time.perf_counter()
    picks.remove_selected()
    wait(widget)
    rerun_s = time.perf_counter() - start
    if screenshot is not None:
        viewer.layers.selection.active = viewer.layers[PICKS]
        viewer.window.resize(1500, 900)
        wait(widget)
        viewer.screenshot(str(screenshot), canvas_only=False, flash=False)
    viewer.close()
    return {"first": times[0], "later": times[1:], "pick": pick_s, "rerun": rerun_s, "picks": n_picks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=6)
    parser.add_argument("--sizes", default="128x128x128,200x512x512")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cryoseg-bench"))
    parser.add_argument("--screenshot", type=Path, default=None, help="PNG of the viewer after the first size's pick")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not os.environ.get("DISPLAY"):
        sys.exit("needs a display: run under xvfb-run (see the docstring)")

    rows = []
    for k, size in enumerate(args.sizes.split(",")):
        shape = tuple(int(v) for v in size.split("x"))
        particles = 45 if shape == (128, 128, 128) else 600
        folder = load_or_simulate(args.workdir, shape, 1, particles, SMALL_SET)
        r = run_case(folder, shape, args.clicks, args.screenshot if k == 0 else None)
        later = r["later"]
        rows.append(f"| {size} | {r['first']:.2f} | {np.median(later):.2f} | {', '.join(f'{t:.2f}' for t in later)} "
                    f"| {r['pick']:.1f} | {r['picks']} | {r['rerun']:.1f} |")
    table = "\n".join(["| tomogram (z×y×x) | first click (s) | later clicks, median (s) | later clicks (s) "
                       "| first pick (s) | picks | rerun after deleting a pick (s) |",
                       "|---|---|---|---|---|---|---|", *rows])
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
