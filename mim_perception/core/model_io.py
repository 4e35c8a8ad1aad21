"""The exported graph's I/O contract, shared by the networks that produce it, export, every backend and the torch
ExportModule (a neutral module so that neither layer has to import the other)."""

INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores", "classes", "seg", "embed")
