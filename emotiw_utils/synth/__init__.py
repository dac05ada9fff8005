"""Deterministic synthetic EmotiW-like data: faces, clips, speech."""
