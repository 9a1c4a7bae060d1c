"""`onetwo synth`: stage 1 draws each character alone, eval keeps the drawings that are that character."""
