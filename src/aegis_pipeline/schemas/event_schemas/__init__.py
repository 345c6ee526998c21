"""JSON Schema (draft 2020-12) files of the events on `policy-events`: `envelope.v1.json`, `<event_type>.v1.json`."""
