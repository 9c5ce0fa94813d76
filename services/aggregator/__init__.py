"""The aggregator: a Faust app that keeps job, batch and queue state."""
