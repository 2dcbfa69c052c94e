"""Recording a meeting's media at this node (docs/media.md, "Recording")."""
