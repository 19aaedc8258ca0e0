"""Passive attribution (survey Sec. III-C): relevance of each input feature for an output.

The families follow the survey's own subsections:

- :mod:`.gradient` — III-C-1a, gradient-related: saliency, Gradient ⊙ Input, SmoothGrad, Integrated
  Gradients, CAM, Grad-CAM (Table IV's formulations);
- :mod:`.propagation` — III-C-1a, backpropagation of relevance signals by modified rules: DeconvNet,
  guided backpropagation, guided Grad-CAM, DeepLIFT, LRP, bias attribution;
- :mod:`.perturbation` — III-C-1b, model-agnostic by perturbing the input or fitting a local model:
  occlusion, prediction difference, meaningful perturbation, LIME, MAPLE, L2X;
- :mod:`.shapley` — III-C-1b, Shapley values [145]: sampling, KernelSHAP, DeepSHAP, DASP, causal Shapley;
- :mod:`.concept` — III-C-2, global attribution to concepts: TCAV, ACE;
- :mod:`.aggregation` — III-C-2 (and semi-local), aggregating local attributions: SpRAy, MAME,
  DeepConsensus.

Bases shared by several families sit here: :mod:`._reference` (a reference input), :mod:`._captum` (a
wrapped Captum class), :mod:`._coalitions` (the model on masked coalitions of players).
"""
