"""Semi-local and global attribution by aggregating local maps (survey Sec. III-C-2): SpRAy [67] clusters
them, MAME [68] builds a multilevel tree of local linear models fitted jointly, DeepConsensus [116] takes
their consensus over networks.  SpRAy and DeepConsensus name their local method (``local_method``) and run
it with that method's own parameters; MAME fits LIME's local loss inside its own objective."""
