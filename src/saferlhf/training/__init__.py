"""Training building blocks shared by stages: score-model losses, pair batches, optimiser set-up."""
