"""The web side of Baton: the dashboard and the operations metrics."""
