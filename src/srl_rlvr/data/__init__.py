"""Expert trajectories in, SRL step instances out."""
