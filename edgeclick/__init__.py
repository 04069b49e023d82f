"""edgeclick: high-resolution interactive segmentation (RITM + adapters) from training to edge devices."""

__version__ = "0.1.0"
