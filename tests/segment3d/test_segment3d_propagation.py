"""Cross-Plane Self-Prompting with a test-double segmenter that returns the true slice mask."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cryoseg.errors import InputError
from cryoseg.models.base import MaskPrediction, PromptableSegmenter, SliceEmbedding
from cryoseg.pipelines.segment import segment_instances
from cryoseg.segment3d import CrossPlaneSegmenter, SelfPromptConfig


class TrueMaskSegmenter(PromptableSegmenter):
    """Returns the connected component of `image > 0.5` under the positive point: the true slice mask.

    Negative points model what a promptable model does with them: pixels with the intensity found
    under a negative point are excluded when it differs from the intensity under the positive point
    (distinct objects are drawn with distinct intensities). Every call is
    recorded: embedded images (to catch re-embedding) and the batch size of each predict call.
    """

    name = "true-mask-double"

    whole_slice = False  # True: every foreground pixel of the slice, not only the component under the point

    def __init__(self) -> None:
        self.embedded: list[bytes] = []
        self.batches: list[int] = []
        self.priors: list[bool] = []

    def embed(self, image: np.ndarray) -> SliceEmbedding:
        self.embedded.append(np.ascontiguousarray(image).tobytes())
        return SliceEmbedding(np.array(image, dtype=np.float32), image.shape)

    def predict(self, embedding, points, point_labels, boxes=None, mask_logits=None, multimask=False):
        image = embedding.data
        self.batches.append(len(points))
        self.priors.append(mask_logits is not None)
        if mask_logits is not None:
            assert mask_logits.shape == (len(points),) + image.shape  # the logits we returned come back
        masks = []
        for pts, labels in zip(points, point_labels):
            pix = np.clip(np.round(pts).astype(int), 0, np.array(image.shape) - 1)
            fg = image > 0.5
            own = image[tuple(pix[0])]
            for (r, c), lab in zip(pix, labels):
                if lab == 0 and fg[r, c] and abs(image[r, c] - own) > 0.05:
                    fg &= ~np.isclose(image, image[r, c], atol=0.05)
            comp, _ = ndimage.label(fg)
            r, c = pix[0]
            if not comp[r, c]:
                masks.append(np.zeros_like(fg))
            else:
                masks.append(fg if self.whole_slice else comp == comp[r, c])
        m = 3 if multimask else 1
        masks = np.repeat(np.array(masks)[:, None], m, axis=1)
        logits = np.where(masks, 4.0, -4.0).astype(np.float32)
        return MaskPrediction(masks, logits, np.full(masks.shape[:2], 0.9, dtype=np.float32))


class MemoEmbedder:
    """Minimal slice-embedding provider: computes each (view, index) once, remembers every request."""

    def __init__(self, segmenter, volume):
        self.segmenter, self.volume, self.memo, self.requests = segmenter, volume, {}, []

    def get(self, view, index):
        self.requests.append((view, index))
        if (view, index) not in self.memo:
            sl = {"z": np.s_[index], "y": np.s_[:, index], "x": np.s_[:, :, index]}[view]
            self.memo[(view, index)] = self.segmenter.embed(self.volume[sl])
        return self.memo[(view, index)]


def ball(shape, centre, radius):
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius ** 2


def iou(a, b):
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


def run(volume, points, negatives=None, segmenter=None, **config):
    seg = segmenter or TrueMaskSegmenter()
    res = segment_instances(volume, seg, points, negatives, SelfPromptConfig(**config), embedder=MemoEmbedder)
    return res, seg


def test_sphere_is_recovered_with_true_mask_double():
    shape = (48, 48, 48)
    truth = ball(shape, (24, 22, 25), 10)
    res, _ = run(truth.astype(np.float32), [(24, 22, 25)])
    (inst,) = res.records
    assert inst.status == "ok" and inst.label == 1
    assert iou(res.instances.data == 1, truth) > 0.9
    assert res.instances.data.dtype == np.int32
    assert np.allclose(inst.centroid, (24, 22, 25), atol=0.5)
    assert inst.bbox == (14, 12, 15, 35, 33, 36)
    # all six directions were propagated, each through the sphere's half (radius 10 -> 8..10 slices)
    assert set(inst.slices) == {"+z", "-z", "+y", "-y", "+x", "-x"}
    assert all(7 <= n <= 10 for n in inst.slices.values()), inst.slices


def test_propagation_feeds_back_mask_logits_and_respects_max_slices():
    truth = ball((48, 48, 48), (24, 24, 24), 10)
    res, seg = run(truth.astype(np.float32), [(24, 24, 24)], max_slices=3)
    # start planes are decoded without a prior, every later slice with the previous slice's logits
    assert seg.priors.count(False) == 3 and seg.priors.count(True) == len(seg.priors) - 3
    assert all(n == 3 for n in res.records[0].slices.values())


def test_direction_stops_when_neighbouring_slices_overlap_less_than_tau():
    """A thin rod standing on a wide disc: from disc to rod the slice IoU is ~0.09, so +z stops at the rod."""
    vol = np.zeros((40, 48, 48), dtype=np.float32)
    zz, yy, xx = np.indices(vol.shape)
    r2 = (yy - 24) ** 2 + (xx - 24) ** 2
    vol[(zz >= 10) & (zz < 20) & (r2 <= 10 ** 2)] = 1  # disc, z 10..19
    vol[(zz >= 20) & (zz < 34) & (r2 <= 3 ** 2)] = 1  # rod, z 20..33
    disc, rod = (zz < 20) & (vol > 0), (zz >= 20) & (vol > 0)
    stopped, _ = run(vol, [(15, 24, 24)], views=("z",))
    assert stopped.records[0].slices == {"+z": 4, "-z": 5}  # z 16..19 and 10..14: the rod was refused
    assert np.array_equal(stopped.instances.data > 0, disc)
    # the same volume with the IoU rule off: the rod is accepted, up to where it vanishes (z 34)
    through, _ = run(vol, [(15, 24, 24)], views=("z",), tau_iou=0.0)
    assert through.records[0].slices == {"+z": 4 + 14, "-z": 5}
    assert np.array_equal(through.instances.data > 0, disc | rod)


def test_direction_stops_at_the_volume_edge():
    """A rod through the whole depth: propagation runs to both faces of the volume, and no further."""
    vol = np.zeros((20, 32, 32), dtype=np.float32)
    zz, yy, xx = np.indices(vol.shape)
    vol[(yy - 16) ** 2 + (xx - 16) ** 2 <= 5 ** 2] = 1
    res, seg = run(vol, [(6, 16, 16)])
    inst = res.records[0]
    assert inst.slices["+z"] == 13 and inst.slices["-z"] == 6  # z 7..19 and 0..5
    assert iou(res.instances.data > 0, vol > 0) > 0.95


def test_union_keeps_only_the_prompts_component():
    """A backend that returns every bright pixel of a slice also marks a separate ball; it is dropped."""
    shape = (48, 48, 64)
    a, b = ball(shape, (24, 24, 18), 8), ball(shape, (24, 24, 46), 5)  # apart; on the same z and y planes
    seg = TrueMaskSegmenter()
    seg.whole_slice = True
    res, _ = run((a | b).astype(np.float32), [(24, 24, 18)], segmenter=seg)
    got = res.instances.data > 0
    assert iou(got, a) > 0.9 and not (got & b).any()


def test_confidence_point_is_the_highest_logit_inside_the_mask():
    from cryoseg.segment3d.propagate import PlaneMask, next_point

    mask = np.zeros((6, 8), dtype=bool)
    mask[1:5, 2:7] = True
    logits = np.zeros((20, 30), dtype=np.float32)
    logits[10, 12] = 9.0  # in the crop window but outside the mask: ignored
    logits[11, 13] = 5.0  # the best pixel inside the mask (slice pixels)
    plane = PlaneMask("z", 0, 10, 10, mask)
    assert next_point(plane, "confidence", logits).tolist() == [11, 13]
    assert next_point(plane, "confidence", None).tolist() == next_point(plane, "distance").tolist()
    truth = ball((40, 40, 40), (20, 20, 20), 9)
    res, _ = run(truth.astype(np.float32), [(20, 20, 20)], point_strategy="confidence")
    assert iou(res.instances.data > 0, truth) > 0.9


def test_u_shape_needs_the_other_views():
    """A U in the (z, x) plane: z-propagation from the bar cannot climb the arms; the y plane sees it all."""
    vol = np.zeros((48, 40, 56), dtype=np.float32)
    vol[14:19, 17:23, 8:48] = 1  # bar along x
    vol[14:42, 17:23, 8:13] = 1  # left arm along z
    vol[14:42, 17:23, 43:48] = 1  # right arm along z
    truth = vol > 0
    z_only, _ = run(vol, [(16, 20, 28)], views=("z",))
    full, _ = run(vol, [(16, 20, 28)])
    assert iou(z_only.instances.data > 0, truth) < 0.6
    assert iou(full.instances.data > 0, truth) > 0.95
    slices = full.records[0].slices
    assert slices.get("+y", 0) >= 2 and slices.get("-y", 0) >= 2


def test_each_slice_embedded_once_and_instances_decoded_together():
    shape = (40, 40, 64)
    rng = np.random.default_rng(0)
    # same z: decoded together on z slices; overlapping x and y ranges: slices requested more than once
    centres = [(20, 12, 12), (20, 28, 24), (20, 20, 50)]
    vol = rng.uniform(0, 0.3, shape).astype(np.float32)  # distinct slices: re-embedding would show
    for c in centres:
        vol[ball(shape, c, 7)] = 1.0
    seg = TrueMaskSegmenter()
    made = []
    res = segment_instances(vol, seg, centres, embedder=lambda s, v: made.append(MemoEmbedder(s, v)) or made[-1])
    embedder = made[0]
    assert [i.status for i in res.records] == ["ok"] * 3
    assert len(seg.embedded) == len(set(seg.embedded)) == res.n_embed
    assert len(set(embedder.requests)) == res.n_embed < len(embedder.requests)
    # the three spheres share their z slices: those are decoded in one call with 3 prompts
    assert max(seg.batches) == 3
    assert res.n_predict == len(seg.batches)
    alone = [run(vol, [c])[0].n_predict for c in centres]
    assert res.n_predict < sum(alone)


def test_negative_point_excludes_touching_neighbour():
    shape = (48, 48, 64)
    vol = np.zeros(shape, dtype=np.float32)
    a, b = ball(shape, (24, 24, 22), 9), ball(shape, (24, 24, 39), 9)  # overlapping by a thin lens
    vol[a] = 1.0
    vol[b & ~a] = 1.5  # a different object: other intensity
    merged, _ = run(vol, [(24, 24, 22)])
    assert iou(merged.instances.data > 0, a | b) > 0.9  # without a negative the neighbour is taken too
    res, _ = run(vol, [(24, 24, 22)], negatives=[(24, 24, 41)])
    got = res.instances.data > 0
    assert iou(got, a) > 0.9
    assert np.count_nonzero(got & b & ~a) < 0.02 * np.count_nonzero(b)


def test_several_prompts_give_several_instances_without_overwriting():
    shape = (40, 40, 64)
    vol = np.zeros(shape, dtype=np.float32)
    a, b = ball(shape, (20, 20, 18), 8), ball(shape, (20, 20, 44), 8)
    vol[a | b] = 1.0
    seg = TrueMaskSegmenter()
    engine = CrossPlaneSegmenter(vol, seg, embedder=MemoEmbedder)
    first, second = engine.segment([(20, 20, 18), (20, 20, 44)])
    assert (first.label, second.label) == (1, 2)
    assert iou(engine.labels == 1, a) > 0.9 and iou(engine.labels == 2, b) > 0.9
    before = engine.labels.copy()
    (third,) = engine.segment([(20, 22, 20)])  # inside the first instance: it keeps its voxels
    assert third.status == "duplicate" and third.duplicate_of == 1 and third.label == 0
    assert np.array_equal(engine.labels, before)
    engine.segment([(20, 20, 30)])  # on background, between them
    assert engine.segmenter.n_embed == len(seg.embedded) == len(set(engine.embedder.inner.requests))
    assert [i.status for i in engine.instances] == ["ok", "ok", "duplicate", "empty"]
    engine.remove(engine.instances[0], "rejected_size")
    assert set(np.unique(engine.labels)) == {0, 2} and engine.instances[0].status == "rejected_size"


def test_touching_prompted_objects_are_split_between_their_prompts():
    shape = (40, 40, 64)
    a, b = ball(shape, (20, 20, 22), 9), ball(shape, (20, 20, 38), 9)  # same kind, fused by a neck
    vol = (a | b).astype(np.float32)
    res, _ = run(vol, [(20, 20, 22), (20, 20, 38)])
    assert iou(res.instances.data == 1, a) > 0.85 and iou(res.instances.data == 2, b) > 0.85
    alone, _ = run(vol, [(20, 20, 22), (20, 20, 38)], others_as_negatives=False)
    assert alone.records[1].status == "duplicate"  # the first took both, the second found its prompt taken


def test_prompt_on_background_is_reported_empty():
    vol = ball((40, 40, 40), (20, 20, 20), 6).astype(np.float32)
    res, _ = run(vol, [(20, 20, 20), (5, 5, 5)])
    assert [i.status for i in res.records] == ["ok", "empty"]
    assert res.records[1].voxels == 0 and res.records[1].label == 0


def test_hole_filling_fills_pinholes_but_keeps_a_vesicle_lumen_open():
    shape = (48, 48, 48)
    shell = ball(shape, (24, 24, 24), 14) & ~ball(shape, (24, 24, 24), 10)
    vol = shell.astype(np.float32)
    pinholes = [(24, 24, 36), (30, 24, 35)]  # inside the membrane wall
    for p in pinholes:
        vol[p] = 0
    res, _ = run(vol, [(24, 24, 37)])
    got = res.instances.data > 0
    assert all(got[p] for p in pinholes)
    assert iou(got, shell) > 0.9
    assert not got[24, 24, 24] and not got[24, 24, 30]
    kept, _ = run(vol, [(24, 24, 37)], fill_holes=False)
    assert not any(kept.instances.data[p] for p in pinholes)


@pytest.mark.parametrize("points, message", [
    ([(10, 10, 40)], "prompt 1 at (z, y, x) = (10, 10, 40) voxels lies outside the volume of shape (32, 32, 32)"),
    ([(1, 2)], "shape (N, 3)"),
    ([(np.nan, 1, 1)], "NaN"),
])
def test_bad_prompts_raise(points, message):
    vol = np.zeros((32, 32, 32), dtype=np.float32)
    with pytest.raises(InputError, match=None) as info:
        run(vol, points)
    assert message in str(info.value)


def test_bad_config_raises():
    with pytest.raises(InputError, match="tau_iou"):
        SelfPromptConfig(tau_iou=1.5)
    with pytest.raises(InputError, match="views"):
        SelfPromptConfig(views=("z", "w"))
