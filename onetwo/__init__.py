"""onetwo: two-character LoRAs from single-character images (the 1to2 method) on kohya-ss sd-scripts."""

__version__ = "0.1.0"
