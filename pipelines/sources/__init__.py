"""Source plugs (``pipelines.seam.Source``): one module per source."""
