"""otsentry.alerts stage (see DESIGN.md)."""
