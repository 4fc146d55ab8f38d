"""Custom ops: one file each, with its numpy reference, TE compute and schedule space(s)."""
