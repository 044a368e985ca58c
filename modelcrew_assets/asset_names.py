"""Every asset's name, in pipeline order: the one place a key is spelled. Stage code reaches them through its
index class (`SwappedFaces.ASSET`, in handoffs.py) or here; storage prefixes and checks use the same names."""

MODEL_UPLOADS = "model_uploads"
SWAPPED_FACES = "swapped_faces"
CAPTIONS = "captions"
KOHYA_DATASET = "kohya_dataset"
LORA_CHECKPOINTS = "lora_checkpoints"
CHECKPOINT_EVALUATIONS = "checkpoint_evaluations"
GENERATED_BATCHES = "generated_batches"
PLATFORM_EXPORTS = "platform_exports"
SCHEDULED_POSTS = "scheduled_posts"
