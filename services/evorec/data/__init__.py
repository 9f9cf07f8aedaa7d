"""Interaction data: readers of public and generic formats, cleaning, splits, the synthetic
drift simulator, downloads, and the on-disk layout of a prepared dataset."""
