"""oaiofs: a virtual drive over a server that stores and shares oaio objects."""
__version__ = "0.1.0"
