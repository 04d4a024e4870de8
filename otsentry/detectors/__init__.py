"""otsentry.detectors stage (see DESIGN.md)."""
