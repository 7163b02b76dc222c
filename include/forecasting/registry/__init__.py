"""The model registry and the champion/challenger gate that decides what is published."""
