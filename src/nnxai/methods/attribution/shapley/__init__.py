"""Shapley-value attribution (survey Sec. III-C-1b, [104]-[107], [145]): permutation sampling, KernelSHAP,
DeepSHAP, DASP and causal Shapley values; :mod:`._shapley_players` defines the players (patches, features)."""
