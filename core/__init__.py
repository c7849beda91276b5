"""tickrun's domain, persistence and event log.

Nothing here imports web, Kubernetes or LLM libraries: the runner, the controller and
the API all stand on this package, so it must stay the bottom layer.
"""

__version__ = "0.1.0"
