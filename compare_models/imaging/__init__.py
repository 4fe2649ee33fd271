"""Arrays in, arrays out: geometry, stitching, registration and metrics.

No file format, model or command-line code is imported here.
"""
