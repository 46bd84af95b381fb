"""File formats: audio files (soundfile, soxr), the ``.npz`` codes file, and all-or-nothing writes."""
