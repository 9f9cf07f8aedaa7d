"""The InterestService: the durable event log and each user's evolving interest profile."""
