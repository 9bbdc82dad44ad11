"""Model files: the registry of verified files, insightface packs, fetching and dlib-to-ONNX
conversion."""
