"""Local stand-ins for production infrastructure: the embedded engine stack and sample remote sources."""
