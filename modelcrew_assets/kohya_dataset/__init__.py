"""kohya_dataset: the captioned images laid out for kohya sd-scripts, with a dataset config and a zip."""
