"""Analytics: the Kafka → ClickHouse sink, the schema migrations and the analytics API."""
