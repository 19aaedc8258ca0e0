"""Local and semi-local rules and counterfactuals (survey Sec. III-A-1): CEM, CDRP, CVE, DACE, Anchors and
the interpretable partial substitute."""
