"""Hand-written layers on CuPy buffers: each forward and backward is cuDNN / cuBLAS calls.

context.py  the handles, stream and workspace that every call of a model shares
algorithms.py  choosing convolution algorithms (cudnnFind...AlgorithmEx or the _v7 heuristics)
algorithm_cache.py  the chosen algorithms and engines on disk, per GPU, cuDNN, shape and policy
conv.py relu.py mse.py  the layers; each method's docstring names the calls it makes
graphs.py engines.py fusion.py  the NHWC graph-API path: the fused operation graphs, each one's
            engine chosen and run, and the layer that holds one per convolution direction
sgd.py  the SGD update: one cublasSaxpy over the flat buffers
precision.py  --precision bf16: which tensors are BF16, and the FP32 <-> BF16 conversions
"""
