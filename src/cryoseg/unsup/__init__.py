"""The unsupervised multi-scale method: attention affinities (Stable Diffusion self-attention, or weight-free
features), spectral maps, aggregation, z-smoothing, adaptive thresholding and region splitting, which together make
membrane and particle pseudo-labels for a student network (`cryoseg.pipelines.unsup`).

Submodules are imported on use, so `import cryoseg.unsup` loads neither torch nor diffusers.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "Slab": "slabs", "check_slab": "slabs", "choose_slabs": "slabs", "parse_slab": "slabs",
    "structure_profile": "slabs",
    "CanvasConfig": "canvas", "prepare_canvas": "canvas", "cut_tiles": "canvas", "join_tiles": "canvas",
    "AffinitySource": "affinity", "FeatureAffinity": "affinity", "affinity_source": "affinity",
    "affinity_source_names": "affinity",
    "FeatureAffinityConfig": "affinity_config", "DiffusionAttentionConfig": "affinity_config",
    "DiffusionAttention": "diffusion", "random_diffusion_source": "diffusion",
    "spectral_maps": "spectral",
    "AggregateConfig": "aggregate", "Aggregated": "aggregate", "aggregate_maps": "aggregate",
    "orient_map": "aggregate", "smooth_along_z": "aggregate", "suppress_background": "aggregate",
    "MapConfig": "maps", "slice_map": "maps", "slab_maps": "maps",
    "ThresholdConfig": "threshold", "adaptive_threshold": "threshold",
    "RegionRules": "regions", "Separated": "regions", "split_regions": "regions", "separate_particles": "regions",
    "merge_centres_3d": "regions", "cellpose_weights": "regions",
    "LabelConfig": "labels", "SlabLabels": "labels", "label_slab": "labels", "classify_slices": "labels", "particle_centres": "labels",
    "StudentConfig": "student", "build_student": "student", "predict_slices": "student",
    # the method end to end (`cryoseg.pipelines.unsup`)
    "PseudoLabelConfig": "cryoseg.pipelines.unsup", "StudentTrainConfig": "cryoseg.pipelines.unsup",
    "PseudoLabels": "cryoseg.pipelines.unsup", "UnsupSegmentation": "cryoseg.pipelines.unsup",
    "NoStructureError": "cryoseg.pipelines.unsup", "pseudo_labels": "cryoseg.pipelines.unsup",
    "train_student": "cryoseg.pipelines.unsup", "segment": "cryoseg.pipelines.unsup", "run": "cryoseg.pipelines.unsup",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
