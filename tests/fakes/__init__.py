"""Local stand-ins for outside services, driven through their real clients."""
