"""Loading a model: its manifest and graph contract, where its files are (folder or hub), its checked
onnxruntime sessions, and the optional fused kernel library."""
