"""Files in and out: the ``Dataset`` type, the NPZ, ptychodus and CXI readers and writers, the
by-content dispatch that picks one, and iterative-reconstruction files.

Nothing here unpickles anything from a file a user passes in.
"""
