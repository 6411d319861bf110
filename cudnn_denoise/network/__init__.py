"""The network twice: on cuDNN and cuBLAS (model.py), and in NumPy on the CPU (reference.py).

model.py  DenoiseCNN: the three layers, the step, the flat parameter and gradient buffers
reference.py  the same forward, backward and SGD step in float64 NumPy, the CPU oracle
options.py  which options of the step go together, checked before any GPU work
backends.py  denoise's choice between the two
"""
