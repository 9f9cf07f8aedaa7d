"""The learning loop: training data from the live services, retraining, the gate, rollout."""
