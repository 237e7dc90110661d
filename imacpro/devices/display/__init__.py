"""The display: the GPU (vega.py), its boot framebuffer's modes (framebuffer.py)."""
