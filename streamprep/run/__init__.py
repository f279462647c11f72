"""One run: the source supervisor, one branch per model, the fan-out to the sinks, batching."""
