"""Stages: one configuration dataclass and one ``run(config) -> metrics`` per CLI sub-command."""
