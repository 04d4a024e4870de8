"""otsentry.stream stage (see DESIGN.md)."""
