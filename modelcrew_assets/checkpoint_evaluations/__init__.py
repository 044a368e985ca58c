"""checkpoint_evaluations: sample grids, identity and memorization scores, the best checkpoint picked."""
