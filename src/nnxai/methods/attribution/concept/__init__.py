"""Global attribution to human concepts (survey Sec. III-C-2): TCAV [63] and ACE [115], on concept
activation vectors (:mod:`nnxai.ops.cav`)."""
