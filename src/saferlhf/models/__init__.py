"""Model loading (built-in names, hub ids, local folders) and the score model."""
