"""The architectures' names, importable without torch (flag parsing needs them)."""

ARCHS = ("cnn", "mobilenet", "mlp")
