"""Hand-written layers on CuPy float32 buffers: each forward and backward is cuDNN / cuBLAS calls.

context.py  the handles, stream and workspace that every call of a model shares
algorithms.py  choosing convolution algorithms (cudnnFind...AlgorithmEx or the _v7 heuristics)
conv.py relu.py mse.py  the layers; each method's docstring names the calls it makes
"""
