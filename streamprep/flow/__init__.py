"""Flow primitives: bounded queues with drop policies, executors for blocking work, backoff."""
