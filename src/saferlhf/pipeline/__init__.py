"""The main job: sample answers, collect decoupled labels, train reward and cost models, (policy,) evaluate."""
