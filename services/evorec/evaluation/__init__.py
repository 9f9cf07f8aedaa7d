"""Evaluation: the leave-one-out protocol, ranking and beyond-accuracy metrics, reports."""
