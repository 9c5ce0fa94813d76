"""What every service shares: settings, Kafka clients, serde, auth, logging, metrics."""
