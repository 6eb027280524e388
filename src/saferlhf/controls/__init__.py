"""Refusal controls: parts that steer *whether* a model refuses, acting on its activations or tokens.

``direction`` holds the refusal direction of Arditi et al. (2024, "Refusal in language models is
mediated by a single direction"): the difference in means of residual-stream activations between
harmful and harmless prompts, its directional ablation (forward hooks, or orthogonalised weights saved
as an ordinary Hugging Face folder), activation addition and the reference refusal score;
``direction_select`` picks one direction among the (position, layer) candidates with the reference's
filters, and ``direction_stage`` is ``saferlhf refusal-direction``. The package sits above
``models/`` and below ``evaluation/``: evaluation, the pipeline and the report use a control without
knowing how it works, and a control's state (a direction, a threshold) is a small file beside its model.
``tokens`` holds refusal tokens (Jain et al. 2024) and ``gate`` a prompt-conditioned refusal gate on a
linear harm probe (``probe``). See docs/controls.md.
"""
