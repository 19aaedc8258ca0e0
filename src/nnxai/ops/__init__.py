"""Numerics shared by methods and metrics (neither imports the other's files for them).

- :mod:`.maps` — saliency reduction, reference inputs, input bounds;
- :mod:`.noise` — randomness seeded by an input's values;
- :mod:`.groups` — patches / features as groups of input values (players, cells);
- :mod:`.spectral` — spectral clustering of relevance maps (SpRAy);
- :mod:`.segments` — superpixel segments (LIME, ACE, concept metrics);
- :mod:`.cav` — concept activation vectors and their tests (TCAV, ACE, concept metrics);
- :mod:`.feature_space` — sampling a model's input space under rule conditions (TREPAN, rule metrics).
"""
