"""captions: one training caption per image, trigger word first, from hand, a vision model or a template."""
