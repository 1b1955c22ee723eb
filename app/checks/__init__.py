"""Checks an event must pass before it is recorded (validation against the ATS API)."""
