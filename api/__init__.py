"""tickrun api."""
