"""The PreprocessService: raw text in, normalized tokens out."""
