"""otsentry.features stage (see DESIGN.md)."""
