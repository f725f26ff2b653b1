"""cryoseg in napari: an npe2 plugin (manifest `napari.yaml`), installed with `pip install 'cryoseg[napari]'`.

- readers and writers (`files`): tomograms and label maps (MRC, TIFF, OME-Zarr) with their voxel size as the layer
  scale (`layers`: Å or nm), particle coordinates (STAR, CSV, copick JSON, ndjson) as points layers;
- "Segment and pick" (`pick_widget`): click a particle, see its 3D mask, pick every one of its kind;
- ScSAM and unsupervised segmentation with a trained model folder (`model_widgets`);
- sample data (`sample`): a simulated tomogram with its ground truth.

napari is imported only by the widgets and readers, never by the rest of cryoseg.
"""
