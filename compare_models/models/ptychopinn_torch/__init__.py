"""PtychoPINN's PyTorch-backend bundles (``wts.h5.zip`` with ``manifest.dill`` version
``2.0-pytorch``), read without unpickling and run by this project's own torch code.

Modules, one job each: ``archive`` (the zip's members: the ``.dill`` members through an opcode
walk, the ``.pth``/``.pt`` members with ``torch.load(weights_only=True)``), ``settings`` (the
generator and scaling mode, validated), ``weights`` (the state_dict checked key by key),
``cnn`` and ``ffno`` (the two generators' inference forward passes; ``functional``: what they
share), ``inputs`` (the input scale factor and the groups), ``model`` (the loaded model),
``stream`` (predict and stitch on the device). The code is written from what PtychoPINN (hoidn/PtychoPINN, commit 712c23f)
computes; none of it is copied. This package imports nothing itself, and imports torch only
inside the modules that run a network.
"""
