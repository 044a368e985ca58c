"""swapped_faces: the model's face swapped onto its target photos (MaxStudio or dry-run), with a ledger
that never pays twice and a quality gate on the results."""
