"""Everything that speaks sd-scripts' language: its arguments and dataset keys, the rendered TOMLs, buckets and
steps, the kohya_ss GUI file, safetensors headers, LoRA metadata, hashes and provenance, and what a base model
file is."""
