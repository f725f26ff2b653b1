"""Pictures: orthogonal-slice previews (PNG) with label overlays and picks, drawn with numpy + Pillow."""

from .preview import Panel, PreviewConfig, RenderedPreview, label_colour, render_preview, save_preview

__all__ = ["Panel", "PreviewConfig", "RenderedPreview", "label_colour", "render_preview", "save_preview"]
