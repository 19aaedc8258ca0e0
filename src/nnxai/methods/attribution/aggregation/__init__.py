"""Semi-local and global attribution by aggregating local maps (survey Sec. III-C-2): SpRAy [67] clusters
them, MAME [68] builds a multilevel tree of them, DeepConsensus [116] takes their consensus over networks.
Each names its local method (``local_method``) and runs it with that method's own parameters."""
