"""Collectors: declarative sources fetched on a schedule and published to the raw Kafka topic."""
