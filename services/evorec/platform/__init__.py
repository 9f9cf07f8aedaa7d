"""What every evorec service stands on: configuration, the server runtime, errors, clients."""
