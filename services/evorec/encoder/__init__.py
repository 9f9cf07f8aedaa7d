"""Sequence models of users' interests: baselines, the TensorFlow encoders, training, export."""
