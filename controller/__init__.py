"""tickrun controller."""
