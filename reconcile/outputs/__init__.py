"""Outputs of the event stream and of what upsd serves: metrics (and, later, notifications, MQTT)."""
