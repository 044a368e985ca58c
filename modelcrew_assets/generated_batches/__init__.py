"""generated_batches: prompt packs rendered with the chosen checkpoint, resumable, and a nightly schedule."""
