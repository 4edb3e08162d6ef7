"""Sans-I/O encodings of the client protocol: frame bytes to commands, replies and pushes to bytes."""
