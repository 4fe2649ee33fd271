"""The networks, their physics and inputs, grouping, training, inference and model bundles.

Import the module you need (``models.pinn``, ``models.inference``, ...): this package imports
nothing itself, so reading a dataset or stitching never loads TensorFlow.
"""
