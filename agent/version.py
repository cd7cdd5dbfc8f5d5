"""The project's version, written once: pyproject.toml reads it (``[tool.setuptools.dynamic]``),
``--version`` of both tools prints it, and the agent artefact and status carry it."""

VERSION = "0.1.0"
