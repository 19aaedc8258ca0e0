"""Passive rule extraction (survey Sec. III-A), in the survey's subsections:

- ``local`` — III-A-1, (semi-)local rules for one input or a region (CEM, Anchors, counterfactuals);
- ``decompositional`` — III-A-2a, global rules read from the weights unit by unit (KT, M-of-N, NeuroRule);
- :mod:`.pedagogical` — III-A-2b, global rules from querying the network as a black box (TREPAN, ...).
"""
