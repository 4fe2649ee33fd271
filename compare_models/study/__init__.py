"""Making the study's inputs: the simulator and the pty-chi runner."""
