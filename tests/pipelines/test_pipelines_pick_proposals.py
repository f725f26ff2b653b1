"""`pick_instances` stage 5 on its own: the query comes from the prompted 3D masks; proposals inside an
instance are skipped; the size filter rejects (configurably); picks are relabelled and scored; a prompted mask
that leaked is cut back.

Matching is replaced by fixed proposals, verification by one passing every proposal with its matching score,
and the segmenter by one returning the true slice mask, so every outcome is known exactly.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy import ndimage

import cryoseg.pipelines.pick as pick_module
from cryoseg.matching import MatchResult
from cryoseg.models.base import MaskPrediction, PromptableSegmenter, SliceEmbedding
from cryoseg.pipelines import PickConfig, pick_instances
from cryoseg.verify import Cut, Verification

SHAPE = (40, 40, 100)
CENTRES = {"A": (20, 20, 12), "B": (20, 20, 36), "D": (20, 20, 60), "C": (20, 20, 84)}
RADII = {"A": 6, "B": 6, "D": 6, "C": 3}  # C is an eighth of the prompted A's volume


class SliceMaskDouble(PromptableSegmenter):
    """The connected component of `image > 0.5` under the first (positive) point."""

    name = "slice-mask-double"

    def embed(self, image):
        return SliceEmbedding(np.asarray(image, dtype=np.float32), image.shape)

    def predict(self, embedding, points, point_labels, boxes=None, mask_logits=None, multimask=False):
        comp, _ = ndimage.label(embedding.data > 0.5)
        masks = []
        for pts in points:
            r, c = np.clip(np.round(pts[0]).astype(int), 0, np.array(comp.shape) - 1)
            masks.append(comp == comp[r, c] if comp[r, c] else np.zeros(comp.shape, bool))
        masks = np.repeat(np.array(masks)[:, None], 3 if multimask else 1, axis=1)
        return MaskPrediction(masks, np.where(masks, 4.0, -4.0).astype(np.float32),
                              np.full(masks.shape[:2], 0.9, np.float32))


def ball(name):
    zz, yy, xx = np.indices(SHAPE)
    c, r = CENTRES[name], RADII[name]
    return (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r ** 2


@pytest.fixture
def fake_matching(monkeypatch):
    """Fixed proposals, best first: inside A (the prompt's instance), D, C (too small), B, inside B."""
    seen = {}
    points = np.array([(20, 21, 13), CENTRES["D"], CENTRES["C"], CENTRES["B"], (20, 21, 37)], dtype=np.float64)
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.65], dtype=np.float32)

    def build_query(features, labels, *args):
        seen["query_masks"] = np.array(labels)
        return SimpleNamespace(vector=np.ones(1, np.float32), negative_vectors=np.zeros((0, 1), np.float32),
                               exemplars=[None], describe=lambda: "fake query")

    def match(features, query, config, negatives=None, negative_features=None):
        assert query.vector.tolist() == [1.0]
        return MatchResult(points, scores, n_evaluations=5)

    def verify(volume, smooth, matches, query, prompted, radius, negatives, labels, config):
        n = len(matches.points)
        passed = Verification(matches.points, matches.scores.astype(float), matches.scores.astype(float),
                              np.full(n, np.nan), np.arange(n), Cut(0.0, "given"), radius)
        return passed, matches.scores.astype(float)

    monkeypatch.setattr(pick_module, "build_volume_features", lambda *a, **k: "features")
    monkeypatch.setattr(pick_module, "_verify", verify)
    monkeypatch.setattr(pick_module, "build_query", build_query)
    monkeypatch.setattr(pick_module, "match", match)
    return seen


@pytest.fixture(scope="module")
def volume():
    return np.any([ball(n) for n in CENTRES], axis=0).astype(np.float32)


def run(volume, **config):
    return pick_instances(volume, SliceMaskDouble(), extractor=object(), prompts=[CENTRES["A"]],
                          config=PickConfig(**config))


def test_query_is_built_from_the_prompted_instances_3d_masks(volume, fake_matching):
    run(volume)
    masks = fake_matching["query_masks"]
    assert masks.shape == SHAPE and set(np.unique(masks)) == {0, 1}  # the prompt's instance only, no proposals
    a = ball("A")
    assert np.count_nonzero((masks > 0) & a) / np.count_nonzero((masks > 0) | a) > 0.9


def test_proposals_inside_instances_are_skipped_and_small_ones_rejected(volume, fake_matching):
    res = run(volume, proposal_batch=1)  # one proposal per batch: "inside B" comes after B is segmented
    c = res.counts
    assert (c["proposals"], c["skipped_inside"], c["rejected_size"], c["instances"]) == (5, 2, 1, 3)
    assert [r.status for r in res.records] == ["ok", "skipped", "ok", "rejected_size", "ok", "skipped"]
    labels = res.instances.data
    # relabelled: the prompt first, then by decreasing score (D 0.9 before B 0.7); C left no voxels
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    for label, name in ((1, "A"), (2, "D"), (3, "B")):
        got, truth = labels == label, ball(name)
        assert np.count_nonzero(got & truth) / np.count_nonzero(got | truth) > 0.9, name
    assert not labels[ball("C")].any()
    assert res.score.tolist() == pytest.approx([1.0, 0.9, 0.7]) and res.similarity.tolist() == res.score.tolist()
    assert res.is_prompt.tolist() == [True, False, False]
    assert res.iou_scores.tolist() == pytest.approx([0.9, 0.9, 0.9])
    assert np.allclose(res.particles.coords, [CENTRES[n] for n in "ADB"], atol=0.5)
    assert res.particles.instance_ids.tolist() == [1, 2, 3]


def test_batching_proposals_changes_the_cost_not_the_result(volume, fake_matching):
    """In one batch, "inside B" is decoded beside B; it must not cut B in two (proposals are not each
    other's negatives) and ends up a duplicate of B, as it is skipped when segmented after B."""
    one_by_one, together = run(volume, proposal_batch=1), run(volume)
    assert np.array_equal(one_by_one.instances.data, together.instances.data)
    assert np.allclose(one_by_one.particles.coords, together.particles.coords)
    assert [r.status for r in together.records] == ["ok", "skipped", "ok", "rejected_size", "ok", "duplicate"]
    assert together.counts["n_predict"] < one_by_one.counts["n_predict"]


def test_size_filter_is_configurable(volume, fake_matching):
    res = run(volume, size_ratio=(0.05, 3.0))
    assert res.counts["rejected_size"] == 0 and res.counts["instances"] == 4
    assert res.instances.data[CENTRES["C"]] > 0


def bridged():
    """The four balls joined by a rod: the prompt's mask leaks along it into all of them."""
    joined = np.any([ball(n) for n in CENTRES], axis=0)
    joined[19:22, 19:22, 12:85] = True
    return joined.astype(np.float32)


def test_a_prompt_mask_that_leaked_is_caught_and_cut_back(fake_matching, caplog):
    with caplog.at_level("WARNING", logger="cryoseg.pipelines"):
        res = run(bridged())
    assert len(res.leaks) == 1 and res.counts["leaks_repaired"] == 1
    assert "prompt 1's mask ran into a neighbour" in caplog.text and "negative point" in caplog.text
    # the query is built from the repaired mask: ball A alone, not the chain
    prompt = fake_matching["query_masks"] > 0
    a = ball("A")
    assert np.count_nonzero(prompt & a) / np.count_nonzero(prompt | a) > 0.8
    assert res.report()["leaks"] == [res.leaks[0].describe()]


def test_a_leak_left_unrepaired_is_reported(fake_matching, caplog, monkeypatch):
    monkeypatch.setattr(pick_module, "repair_leak", lambda labels, info, number: None)
    with caplog.at_level("WARNING", logger="cryoseg.pipelines"):
        res = run(bridged())
    assert res.counts["skipped_inside"] == res.counts["proposals"] == 5
    assert "all 5 proposals fell inside" in caplog.text and "leaked" in caplog.text


def test_no_leak_warning_when_proposals_are_segmented(volume, fake_matching, caplog):
    with caplog.at_level("WARNING", logger="cryoseg.pipelines"):
        run(volume)
    assert "fell inside" not in caplog.text


def test_proposal_propagation_is_bounded_by_the_prompted_size(fake_matching, monkeypatch):
    """A proposal on a long rod (a leak-prone structure) propagates at most `proposal_reach` x the prompted
    instance's largest side per direction; the size filter then rejects it either way."""
    volume = ball("A")
    volume[7:14, 7:14, 30:] = True  # a rod along x, 70 voxels long, far from A, 4x its volume
    proposal = np.array([[10.0, 10.0, 60.0]])
    monkeypatch.setattr(pick_module, "match", lambda *a, **k: MatchResult(proposal, np.ones(1, np.float32), 1))
    unbounded = run(volume.astype(np.float32), proposal_reach=None)
    bounded = run(volume.astype(np.float32))
    side = 2 * RADII["A"] + 1  # A's bounding box
    reach = int(np.ceil(1.5 * side))
    assert max(unbounded.records[1].slices.values()) > reach  # it runs to the rod's ends
    assert 0 < max(bounded.records[1].slices.values()) <= reach
    assert bounded.counts["n_predict"] < unbounded.counts["n_predict"]
    assert [r.status for r in bounded.records] == [r.status for r in unbounded.records] == ["ok", "rejected_size"]


def test_proposal_reach_must_be_positive():
    from cryoseg.errors import InputError

    with pytest.raises(InputError, match="proposal_reach must be positive"):
        PickConfig(proposal_reach=0)


def test_a_prompted_mask_too_small_to_pick_from_is_refused_in_one_line(volume, fake_matching):
    from cryoseg.errors import InputError

    with pytest.raises(InputError, match=r"prompt 1 at \(z, y, x\) = \(20, 20, 12\) gave a mask of only \d+ voxel"):
        run(volume, min_prompt_voxels=5000)  # ball A has about 900
    assert run(volume, min_prompt_voxels=500).counts["instances"] == 3
