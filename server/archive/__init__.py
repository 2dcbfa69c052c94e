"""The meeting's archive: the one-file archive, the composite video, retention (issue 16)."""
