"""PtychoPINN's saved models, read without unpickling and rebuilt with this project's layers.

Modules: ``archive`` (``wts.h5.zip`` members), ``layers`` (our IntensityScaler,
ActivationLayer, CenterMaskLayer, CombineComplexLayer, ReassemblePatchesLayer,
TrimReconstructionLayer, ...), ``build`` (``config.json`` -> Keras graph by allow-list, weights),
``pinn`` (the loaded PINN), ``baseline`` (``baseline_model.h5``), ``inputs`` (inputs made as
PtychoPINN makes them). The code is written from what PtychoPINN (hoidn/PtychoPINN, commit
712c23f) computes; none of it is copied. This package imports nothing itself.
"""
