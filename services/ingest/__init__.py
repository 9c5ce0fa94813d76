"""Job submission: validation, idempotency, routing by priority."""
