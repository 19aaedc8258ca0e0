"""Decompositional rule extraction (survey Sec. III-A-2a): global rules read from the weights unit by unit
(KT, M-of-N, NeuroRule, NeuroLinear, the fuzzy rules the network is, DeepRED)."""
