"""Deployment files for Debian (docs/operations.md): templates and their renderer."""
