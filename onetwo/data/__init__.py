"""The images: scanning the character and regularization folders, captions, checks, the training folders of the
user's own images, composites (planned, built, their pixels, a preview), and how many processes do the work."""
