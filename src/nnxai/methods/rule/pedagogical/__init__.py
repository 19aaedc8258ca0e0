"""Pedagogical rule extraction (survey Sec. III-A-2b): the network is an oracle that labels queries, and a
rule set or tree is learnt from its answers (TREPAN [89], with its M-of-N tests in :mod:`._mofn`)."""
