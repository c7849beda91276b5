"""tickrun bench."""
