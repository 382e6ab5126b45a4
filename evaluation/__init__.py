"""Accuracy, latency and reports for the original and the compressed model, measured side by side."""
