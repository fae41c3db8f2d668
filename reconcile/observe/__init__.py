"""Observe: read what is there (USB bus, NUT files and processes). No decisions, no changes."""
