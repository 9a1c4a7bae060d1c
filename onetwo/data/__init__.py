"""The images: scanning character folders, captions, checks, stage 1's originals, composites and their pixels."""
