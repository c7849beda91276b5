"""Kubernetes: a Job per run. The only package that imports the `kubernetes` client."""
