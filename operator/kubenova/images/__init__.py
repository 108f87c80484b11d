"""The image server: where hosts fetch images from and upload snapshots to."""
