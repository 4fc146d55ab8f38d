"""Schedule spaces: knobs as data (space.py) and one file per op family that applies them."""
