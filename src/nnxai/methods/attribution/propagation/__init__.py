"""Backpropagation-based attribution (survey Sec. III-C-1a): relevance sent backwards layer by layer with
modified rules instead of the chain rule (DeconvNet, guided backpropagation, DeepLIFT, LRP, bias attribution);
:mod:`._lrp_rules` holds the layer rules they share."""
