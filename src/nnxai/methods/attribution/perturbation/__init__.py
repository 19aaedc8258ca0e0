"""Model-agnostic attribution by perturbation and local surrogates (survey Sec. III-C-1b): occlusion,
prediction difference analysis, meaningful perturbation, LIME, MAPLE and the L2X feature selector."""
