"""A segmenter trained on one density polarity meets tomograms of both: the engine negates the slices for it when
the tomogram's density appears the other way (`SelfPromptConfig.polarity`, estimated by default)."""

from __future__ import annotations

import numpy as np
import pytest

from cryoseg.errors import InputError
from cryoseg.pipelines.segment import segment_instances
from cryoseg.segment3d import SelfPromptConfig
from cryoseg.segment3d.wrappers import InvertedContrast, matched_to_polarity

from .test_segment3d_propagation import TrueMaskSegmenter


class BrightOnly(TrueMaskSegmenter):
    """Finds objects brighter than 0.5 only, and says so."""

    polarity = "bright"


def _dark_blobs() -> tuple[np.ndarray, np.ndarray]:
    """(40, 40, 40) noisy background with three dark balls (density -1, raw cryo-ET contrast); their centres."""
    rng = np.random.default_rng(0)
    volume = rng.normal(0.0, 0.1, (40, 40, 40)).astype(np.float32)
    centres = np.array([(12, 12, 12), (26, 28, 14), (20, 14, 28)])
    zz, yy, xx = np.mgrid[:40, :40, :40]
    for c in centres:
        volume[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 25] = -1.0
    return volume, centres


def test_a_bright_trained_segmenter_finds_dark_density_through_negated_slices():
    volume, centres = _dark_blobs()
    found = segment_instances(volume, BrightOnly(), centres[:1])  # polarity "auto": estimated dark
    assert [r.status for r in found.records] == ["ok"] and 400 < found.records[0].voxels < 600  # 4/3 pi 5^3
    assert "negated" in found.models["segmenter_slices"]  # the result says the model saw negated slices
    # told the density is bright, it is shown the raw slices and finds nothing
    raw = segment_instances(volume, BrightOnly(), centres[:1], config=SelfPromptConfig(polarity="bright"))
    assert [r.status for r in raw.records] == ["empty"]
    assert "segmenter_slices" not in raw.models
    # on the negated tomogram (bright density) nothing is negated
    bright = segment_instances(-volume, BrightOnly(), centres[:1])
    assert np.array_equal(np.asarray(bright.instances.data) > 0, np.asarray(found.instances.data) > 0)


def test_only_a_segmenter_with_a_polarity_is_wrapped():
    volume, _ = _dark_blobs()
    plain = TrueMaskSegmenter()  # takes either polarity
    assert matched_to_polarity(plain, volume) is plain
    assert matched_to_polarity(plain, volume, "bright") is plain
    model = BrightOnly()
    assert matched_to_polarity(model, -volume) is model and matched_to_polarity(model, volume, "bright") is model
    wrapped = matched_to_polarity(model, volume)
    assert isinstance(wrapped, InvertedContrast) and wrapped.polarity == "dark" and wrapped.inner is model
    assert matched_to_polarity(model, -volume, "dark").polarity == "dark"
    # the wrapped model sees the slice negated, and its embeddings are cached apart from the plain model's
    wrapped.embed(volume[12])
    assert np.array_equal(np.frombuffer(model.embedded[-1], np.float32).reshape(40, 40), -volume[12])
    assert wrapped.signature() != model.signature() and wrapped.signature()["name"] == model.name
    with pytest.raises(InputError, match="polarity must be one of"):
        matched_to_polarity(model, volume, "grey")
    with pytest.raises(InputError, match="polarity must be one of"):
        SelfPromptConfig(polarity="inverted")


def test_compact_sam_declares_dark_density():
    from cryoseg.models.compact_sam import CompactSamSegmenter

    assert CompactSamSegmenter.polarity == "dark"
