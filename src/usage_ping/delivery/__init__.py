"""Delivery: the outbox, the transport to the central service, the weekly schedule, export."""
