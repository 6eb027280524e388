"""Refusal controls: parts that change *which* prompts a model refuses, at inference time.

``direction`` (the refusal direction, Arditi et al. 2024), ``tokens`` (refusal tokens, Jain et al. 2024),
``gate`` (a prompt-conditioned refusal gate on a linear harm probe). See docs/controls.md.
"""
