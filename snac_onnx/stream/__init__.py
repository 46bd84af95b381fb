"""Streaming decode: the incremental decoder, token presets of the SNAC TTS family, and the pool that steps
many streams of one model together."""
