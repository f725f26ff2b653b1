"""Single-prompt IoU: each prompt's 3D segmentation scored against its own object, slices embedded once for all."""

from __future__ import annotations

from cryoseg.eval.prompted import single_prompt_ious
from cryoseg.segment3d import SelfPromptConfig
from cryoseg.segment3d.wrappers import CountingSegmenter


def test_each_prompt_is_scored_against_its_own_object_and_slices_are_embedded_once(two_dark_spheres):
    from cryoseg.models.loaders import load_segmenter

    tomogram, instances = two_dark_spheres
    config = SelfPromptConfig(polarity="dark")
    cases = [((14, 20, 14), instances == 1), ((26, 20, 26), instances == 2)]
    together = CountingSegmenter(load_segmenter("classical"))
    ious = single_prompt_ious(together, tomogram, cases, config)
    assert len(ious) == 2 and min(ious) > 0.7
    swapped = [(cases[0][0], cases[1][1]), (cases[1][0], cases[0][1])]
    assert single_prompt_ious(load_segmenter("classical"), tomogram, swapped, config) == [0.0, 0.0]
    alone = 0
    for case in cases:  # both spheres span y 14-26: their zx slices are shared, embedded once when scored together
        counting = CountingSegmenter(load_segmenter("classical"))
        single_prompt_ious(counting, tomogram, [case], config)
        alone += counting.n_embed
    assert 0 < together.n_embed < alone
